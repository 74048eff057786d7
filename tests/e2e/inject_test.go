package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// InjectModeEnv lists, comma-separated, the injection mechanisms the tests
// require of this kernel: sk-msg (the default, what this project's machines
// allow) and/or write-user (what the kernel matrix asks of its Debian
// kernels, which allow bpf_probe_write_user). Tests that run once use the
// first.
const InjectModeEnv = "ZEROTRACE_TEST_INJECT"

func injectModes() []string {
	if m := os.Getenv(InjectModeEnv); m != "" {
		return strings.Split(m, ",")
	}
	return []string{"sk-msg"}
}

func injectMode() string { return injectModes()[0] }

// received is one request as a plain HTTP/1.1 server parsed it.
type received struct {
	path         string
	traceparents []string
	body         []byte
}

// rawServer is an HTTP/1.1 server written against the wire format, not
// net/http's server: it parses every request with http.ReadRequest, answers
// Expect: 100-continue, and records what it parsed. A request the agent
// corrupted fails to parse, or leaves bytes that fail the next parse.
type rawServer struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []received
	errs []error
}

func startRawServer(t *testing.T) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *rawServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err == io.EOF {
			return
		}
		if err != nil {
			s.fail(fmt.Errorf("parsing a request: %w", err))
			return
		}
		if req.Header.Get("Expect") == "100-continue" {
			if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return
			}
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			s.fail(fmt.Errorf("reading the body of %s: %w", req.URL.Path, err))
			return
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, received{path: req.URL.Path, traceparents: req.Header.Values("Traceparent"), body: body})
		s.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		if req.Close {
			return
		}
	}
}

func (s *rawServer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

// sentBody is the body the sample app's /send builds for size=n.
func sentBody(n int) []byte {
	const pattern = "0123456789abcdefghijklmnopqrstuvwxyz\n"
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern[i%len(pattern)]
	}
	return b
}

var injectCounts = regexp.MustCompile(`counts="([^"]*)"`)

// injectCountsOf reads every injection count of the agent's last report.
func injectCountsOf(t *testing.T, stderr string) map[string]int {
	t.Helper()
	all := injectCounts.FindAllStringSubmatch(stderr, -1)
	if len(all) == 0 {
		t.Fatalf("the agent reported no injection counts:\n%s", stderr)
	}
	out := map[string]int{}
	for _, kv := range strings.Fields(all[len(all)-1][1]) {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("injection count %q is not name=number", kv)
		}
		out[k] = n
	}
	return out
}

// finalInjectCounts reads the injection counts of the agent's last report:
// injected, kept, skipped, failed, not seen.
func finalInjectCounts(t *testing.T, stderr string) [5]int {
	t.Helper()
	m := injectCountsOf(t, stderr)
	var out [5]int
	for i, k := range []string{"injected", "kept_existing", "skipped_unsafe", "failed", "not_seen"} {
		n, ok := m[k]
		if !ok {
			t.Fatalf("the agent's injection counts %v lack %s", m, k)
		}
		out[i] = n
	}
	return out
}

// TestInjectionWellFormed sends requests of every shape through a traced Go
// client to a server that parses the bytes it receives, and checks each
// request arrived well-formed: a traceparent line exactly once, naming the
// client span the agent exported; a request that had one keeps it; one the
// mechanism cannot handle safely (a head over 4 KiB) arrives untouched;
// bodies byte for byte as sent, including a body that is itself a request
// head behind Expect: 100-continue; on a connection opened before the agent
// attached too. The agent's counters must agree.
func TestInjectionWellFormed(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range injectModes() {
		t.Run(mode, func(t *testing.T) { injectionWellFormed(t, mode) })
	}
}

func injectionWellFormed(t *testing.T, mode string) {
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	srv := startRawServer(t)
	client, addr := testenv.StartSampleApp(t, app, "-downstream", "http://"+srv.ln.Addr().String())
	// A keep-alive connection opened before the agent attaches: the first
	// request after attaching goes out on it and must get its header too.
	if err := getOK(&http.Client{}, "http://"+addr+"/send?path=/before-attach"); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(client.Process.Pid), "--output", "json", "--inject", mode)
	if !strings.Contains(a.Stderr(), "context injection: "+mode) {
		t.Fatalf("the agent did not choose --inject %s:\n%s", mode, a.Stderr())
	}

	const kept = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	requestHead := []byte("GET / HTTP/1.1\r\nHost: inside.example\r\n\r\n")
	type shape struct {
		name, query string
		body        []byte
		want        string // "injected", "kept" or "untouched"
	}
	shapes := []shape{
		{"get", "", nil, "injected"},
		{"get-close", "close=1", nil, "injected"},
		{"post", "method=POST&size=100", sentBody(100), "injected"},
		{"post-large", "method=POST&size=300000", sentBody(300000), "injected"},
		{"post-chunked", "method=POST&size=20000&chunked=1", sentBody(20000), "injected"},
		{"expect-request-body", "method=POST&body=request&expect=1", requestHead, "injected"},
		{"has-traceparent", "traceparent=" + kept, nil, "kept"},
		{"large-head", "pad=6000", nil, "untouched"},
	}
	if mode == "write-user" {
		// The header goes into the write buffer before the large one
		// is written: nothing unsafe about it.
		shapes[len(shapes)-1].want = "injected"
	}
	const rounds = 10
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	for r := range rounds {
		for _, s := range shapes {
			path := fmt.Sprintf("/%s/%d", s.name, r)
			resp, err := c.Get(fmt.Sprintf("http://%s/send?path=%s&%s", addr, path, s.query))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("%s: status %d body %q", path, resp.StatusCode, body)
			}
		}
	}
	a.stop()

	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, err := range srv.errs {
		t.Error(err)
	}
	// Client spans by their path, from the agent's output.
	clientSpan := map[string][2]string{}
	for _, s := range fromJSON(a.jsonSpans()) {
		if s.Kind != "client" {
			continue
		}
		u, err := url.Parse(s.Attrs["url.full"])
		if err != nil {
			t.Errorf("client span with url.full %q: %v", s.Attrs["url.full"], err)
			continue
		}
		clientSpan[u.Path] = [2]string{s.TraceID, s.SpanID}
	}
	byPath := map[string][]received{}
	for _, r := range srv.reqs {
		byPath[r.path] = append(byPath[r.path], r)
	}
	var wantInjected, wantKept, wantSkipped int
	for r := range rounds {
		for _, s := range shapes {
			path := fmt.Sprintf("/%s/%d", s.name, r)
			got := byPath[path]
			if len(got) != 1 {
				t.Errorf("%s: the server parsed %d requests, want 1", path, len(got))
				continue
			}
			req := got[0]
			if !bytes.Equal(req.body, s.body) {
				t.Errorf("%s: body of %d bytes differs from the %d sent", path, len(req.body), len(s.body))
			}
			switch s.want {
			case "injected":
				wantInjected++
				ids, ok := clientSpan[path]
				want := fmt.Sprintf("00-%s-%s-01", ids[0], ids[1])
				if !ok {
					t.Errorf("%s: no client span exported", path)
				} else if len(req.traceparents) != 1 || req.traceparents[0] != want {
					t.Errorf("%s: traceparent %q, want exactly [%s] (the client span)", path, req.traceparents, want)
				}
			case "kept":
				wantKept++
				if len(req.traceparents) != 1 || req.traceparents[0] != kept {
					t.Errorf("%s: traceparent %q, want exactly the one sent [%s]", path, req.traceparents, kept)
				}
			case "untouched":
				wantSkipped++
				if len(req.traceparents) != 0 {
					t.Errorf("%s: traceparent %q on a request that should go out untouched", path, req.traceparents)
				}
			}
		}
	}
	got := finalInjectCounts(t, a.Stderr())
	if want := [5]int{wantInjected, wantKept, wantSkipped, 0, 0}; got != want {
		t.Errorf("agent counts injected, kept, skipped, failed, not seen = %v, want %v", got, want)
	}
}
