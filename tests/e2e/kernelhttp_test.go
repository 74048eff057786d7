package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// python is Debian's interpreter (scripts/setup.sh installs it).
const python = "/usr/bin/python3"

// rawExchange sends parts on a new connection, with a pause between them,
// closes its sending side and reads the server's first line, if any.
func rawExchange(t *testing.T, addr string, parts ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(200 * time.Millisecond) // a slow sender
		}
		if _, err := io.WriteString(c, p); err != nil {
			return ""
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(testenv.Timeout(t, 5*time.Second)))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// TestKernelHTTPAnyLanguage traces a Go gateway (uprobes) that calls a
// Python http.server backend, which zerotrace can only see through syscall
// tracepoints. Every backend request must become a server span from the
// kernel path, child of the gateway's client span through the traceparent
// the gateway's agent injected, one per request, with method, path and
// status. Hostile traffic to the backend (garbage, a truncated request, a
// 64 KiB header, a request sent in slow pieces) must not crash anything and
// must not produce a span unless the backend answered a request.
func TestKernelHTTPAnyLanguage(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "server.py")
	backend, beAddr := testenv.StartSampleApp(t, python, script)
	gateway, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+beAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gateway.Process.Pid), "--pid", fmt.Sprint(backend.Process.Pid),
		"--output", "json", "--listen", "127.0.0.1:0")
	if !strings.Contains(a.Stderr(), "traced from the kernel") {
		t.Fatalf("the Python process was not traced from the kernel:\n%s", a.Stderr())
	}

	const requests, workers = 40, 8
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
			for id := w; id < requests; id += workers {
				resp, err := c.Get(fmt.Sprintf("http://%s/chain?id=%d", gwAddr, id))
				if err != nil {
					errs <- err
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("[%d:python]", id); string(body) != want {
					errs <- fmt.Errorf("request %d: %q, want %q", id, body, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Direct requests: keep-alive, and a 500.
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	for _, path := range []string{"/direct/1", "/direct/2", "/fail"} {
		if resp, err := c.Get("http://" + beAddr + path); err != nil {
			t.Fatal(err)
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	// Hostile traffic.
	rawExchange(t, beAddr, "\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
	rawExchange(t, beAddr, "GET /truncated HTT") // then the connection closes
	rawExchange(t, beAddr, "GET /huge HTTP/1.1\r\nX-Big: "+strings.Repeat("b", 64<<10)+"\r\n\r\n")
	if line := rawExchange(t, beAddr, "GET /slow HTTP/1.1\r\nHost: x", "\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("slow request answered %q", line)
	}
	if !alive(backend.Process.Pid) || !alive(gateway.Process.Pid) {
		t.Fatal("a traced process died")
	}
	checkConnections(t, a, gateway.Process.Pid, backend.Process.Pid, beAddr)
	a.stop()

	spans := fromJSON(a.jsonSpans())
	clients := map[string]observed{}
	var kernel []observed
	for _, s := range spans {
		switch {
		case s.Kind == "client":
			clients[s.SpanID] = s
		case s.Attrs["zerotrace.source"] == "kernel":
			kernel = append(kernel, s)
		}
	}
	byPath := map[string]int{}
	joined := map[string]bool{}
	for _, s := range kernel {
		if s.Kind != "server" || s.Resource["process.pid"] != fmt.Sprint(backend.Process.Pid) {
			t.Errorf("kernel span %q kind %s from pid %s", s.Name, s.Kind, s.Resource["process.pid"])
			continue
		}
		if _, ok := s.Resource["process.runtime.name"]; ok {
			t.Errorf("the Python process is reported as runtime %q", s.Resource["process.runtime.name"])
		}
		path := s.Attrs["url.path"]
		byPath[path]++
		if path == "/chain" {
			cs, ok := clients[s.ParentSpanID]
			if !ok || cs.TraceID != s.TraceID {
				t.Errorf("backend span %s (parent %q) does not continue a gateway client span", s.SpanID, s.ParentSpanID)
			} else if joined[cs.SpanID] {
				t.Errorf("two backend spans for client span %s", cs.SpanID)
			}
			joined[cs.SpanID] = true
			if s.Attrs["http.request.method"] != "GET" || s.Attrs["http.response.status_code"] != "200" || s.Name != "GET" {
				t.Errorf("backend span %q: %v", s.Name, s.Attrs)
			}
		}
	}
	// http.server answers the huge header with a 431: a real exchange, so
	// a real span. It answers the truncated request and the garbage with an
	// HTML page and no status line (HTTP/0.9 style): no span, and the
	// truncated request counts as unanswered.
	want := map[string]int{"/chain": requests, "/direct/1": 1, "/direct/2": 1, "/fail": 1, "/slow": 1, "/huge": 1}
	for path, n := range want {
		if byPath[path] != n {
			t.Errorf("%d kernel spans for %s, want %d", byPath[path], path, n)
		}
	}
	for path, n := range byPath {
		if _, ok := want[path]; !ok {
			t.Errorf("%d unexpected kernel spans for %s", n, path)
		}
	}
	if len(joined) != requests {
		t.Errorf("%d of %d backend spans joined the gateway's traces", len(joined), requests)
	}
	if !strings.Contains(a.Stderr(), "kernel_http_unanswered=1") {
		t.Errorf("the truncated request was not counted as unanswered:\n%s", a.Stderr())
	}
}

// checkConnections reads the agent's connection table: the gateway's
// client connections to the backend and the backend's server side of them
// must name each other as peers, and the backend's connections from the
// test (closed by now) must carry their byte counts.
func checkConnections(t *testing.T, a *agent, gwPID, bePID int, beAddr string) {
	t.Helper()
	m := mapAddr.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("the agent did not say where its endpoint is:\n%s", a.Stderr())
	}
	var conns []apiConn
	deadline := time.Now().Add(testenv.Timeout(t, 10*time.Second))
	var client, server, closed int
	for {
		conns = connections(t, "http://"+m[1])
		client, server, closed = 0, 0, 0
		for _, c := range conns {
			switch {
			case c.PID == gwPID && c.Role == "client" && c.Remote == beAddr && c.PeerPID == bePID:
				client++
			case c.PID == bePID && c.Role == "server" && c.Local == beAddr && c.PeerPID == gwPID:
				server++
			case c.PID == bePID && c.Role == "server" && c.Closed != nil && c.BytesReceived > 0 && c.BytesSent > 0:
				closed++
			}
		}
		if client > 0 && server > 0 && closed >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if client == 0 || server == 0 || closed < 3 {
		t.Errorf("connections: %d gateway→backend with peer, %d backend server sides with peer, %d closed with bytes (want ≥1, ≥1, ≥3):\n%+v",
			client, server, closed, conns)
	}
}

// getBody GETs url and returns the body, whatever the status; the test
// fails if the request does.
func getBody(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return string(body)
}

// TestKernelHTTPStreamedResponses traces a Python backend that streams its
// answers as a model server streams tokens: in pieces written 100 ms apart,
// chunked, with a Content-Length, or ended by closing the connection, and a
// file's body sent with sendfile in two halves 100 ms apart. Each
// server span must last until the last piece was written, not end with the
// head; a call the backend makes while streaming is that request's child;
// and what the client receives is exactly what the backend wrote.
func TestKernelHTTPStreamedResponses(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "server.py")
	backend, beAddr := testenv.StartSampleApp(t, python, script)
	tool, toolAddr := testenv.StartSampleApp(t, app)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(backend.Process.Pid), "--pid", fmt.Sprint(tool.Process.Pid), "--output", "json")

	const gap = 100 * time.Millisecond
	streams := map[string]int{ // path → pieces
		"/stream/chunked": 4,
		"/stream/length":  3,
		"/stream/close":   3,
	}
	// Spans checked below: the streams, and /sendfile's two halves.
	pieces := map[string]int{"/sendfile": 1}
	for path, n := range streams {
		pieces[path] = n
	}
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	for path, n := range streams {
		url := fmt.Sprintf("http://%s%s?chunks=%d&gap_ms=%d", beAddr, path, n, gap.Milliseconds())
		if path == "/stream/chunked" {
			url += "&call=http://" + toolAddr + "/hello"
		}
		var want strings.Builder
		for i := range n {
			fmt.Fprintf(&want, "token%d ", i)
		}
		if body := getBody(t, c, url); body != want.String() {
			t.Fatalf("%s: body %q, want %q", path, body, want.String())
		}
	}
	getBody(t, c, "http://"+beAddr+"/direct")
	// A body sent from a file with sendfile, in two halves.
	body := getBody(t, c, fmt.Sprintf("http://%s/sendfile?gap_ms=%d", beAddr, gap.Milliseconds()))
	if want := strings.Repeat("file-body ", 100); body != want {
		t.Fatalf("/sendfile: body %q, want %q", body, want)
	}
	if !alive(backend.Process.Pid) || !alive(tool.Process.Pid) {
		t.Fatal("a traced process died")
	}
	a.stop()

	servers := map[string]observed{}
	var call, toolServer *observed
	for _, s := range fromJSON(a.jsonSpans()) {
		switch {
		case s.Attrs["zerotrace.source"] == "kernel" && s.Kind == "server":
			if _, dup := servers[s.Attrs["url.path"]]; dup {
				t.Errorf("two server spans for %s", s.Attrs["url.path"])
			}
			servers[s.Attrs["url.path"]] = s
		case s.Attrs["zerotrace.source"] == "kernel" && s.Kind == "client":
			call = &s
		case s.Kind == "server" && s.Attrs["url.path"] == "/hello":
			toolServer = &s
		}
	}
	for path, n := range pieces {
		s, ok := servers[path]
		if !ok {
			t.Errorf("no server span for %s; have %v", path, servers)
			continue
		}
		// The backend sleeps before each piece: the last one is written
		// n gaps after the request was read, at the earliest.
		if d := s.End.Sub(s.Start); d < time.Duration(n)*gap {
			t.Errorf("%s: span lasts %v, ends before its last piece (%d pieces %v apart)", path, d, n, gap)
		}
		if s.Attrs["http.response.status_code"] != "200" {
			t.Errorf("%s: status %s", path, s.Attrs["http.response.status_code"])
		}
	}
	if _, ok := servers["/direct"]; !ok {
		t.Errorf("no server span for /direct")
	}
	chunked := servers["/stream/chunked"]
	switch {
	case call == nil:
		t.Error("no client span for the call made while streaming")
	case call.TraceID != chunked.TraceID || call.ParentSpanID != chunked.SpanID:
		t.Errorf("the call made while streaming (trace %s parent %s) is not a child of %s/%s", call.TraceID, call.ParentSpanID, chunked.TraceID, chunked.SpanID)
	case call.End.After(chunked.End):
		t.Errorf("the call ended at %v, after the streamed response it was made in (%v)", call.End, chunked.End)
	}
	if toolServer == nil {
		t.Error("the Go service called while streaming has no server span")
	}
}

// TestKernelHTTPVectoredCalls traces a Python server that reads requests
// with recvmsg() or readv() and answers with sendmsg() or writev(), head and
// body in separate buffers: each exchange must be one server span from the
// kernel path, with its path and status.
func TestKernelHTTPVectoredCalls(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "vecserver.py")
	srv, addr := testenv.StartSampleApp(t, python, script)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(srv.Process.Pid), "--output", "json")
	paths := []string{"/recvmsg/sendmsg/1", "/recvmsg/writev/2", "/readv/sendmsg/3", "/readv/writev/4"}
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	for _, p := range paths {
		resp, err := c.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != p {
			t.Fatalf("%s answered %q", p, body)
		}
	}
	a.stop()
	got := map[string]string{}
	for _, s := range fromJSON(a.jsonSpans()) {
		got[s.Attrs["url.path"]] = s.Attrs["http.response.status_code"]
	}
	for _, p := range paths {
		if got[p] != "200" {
			t.Errorf("%s: span status %q, want a span with 200 (spans: %v)", p, got[p], got)
		}
	}
	if len(got) != len(paths) {
		t.Errorf("spans %v, want one per request", got)
	}
}

// busybox is the static busybox of Debian's busybox-static (scripts/setup.sh
// installs it; the kernel-matrix guests have it too).
const busybox = "/bin/busybox"

// TestKernelHTTPForkingServer traces a Go gateway calling busybox httpd, a C
// server that forks a child for every connection: the children, which
// start after the agent attached, must be traced from their fork (their
// spans under their own PIDs, with their parent's service name), every
// request must be one server span joined to the gateway's trace, and the
// agent must hold nothing for them once they exit. It needs no Python, so
// that the kernel path runs on every kernel of the matrix.
func TestKernelHTTPForkingServer(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	dir := t.TempDir()
	for name, body := range map[string]string{"chain": "busybox", "hello": "hello"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	httpdPID, beAddr := startHTTPD(t, dir)
	gateway, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+beAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gateway.Process.Pid), "--pid", fmt.Sprint(httpdPID), "--output", "json")

	const requests = 20
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	for id := range requests {
		resp, err := c.Get(fmt.Sprintf("http://%s/chain?id=%d", gwAddr, id))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "[busybox]" {
			t.Fatalf("request %d: %d %q", id, resp.StatusCode, body)
		}
	}
	if resp, err := c.Get("http://" + beAddr + "/missing"); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if !alive(httpdPID) || !alive(gateway.Process.Pid) {
		t.Fatal("a traced process died")
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	clients := map[string]observed{}
	for _, s := range spans {
		if s.Kind == "client" {
			clients[s.SpanID] = s
		}
	}
	pids := map[string]bool{}
	var chain, missing int
	for _, s := range spans {
		if s.Attrs["zerotrace.source"] != "kernel" {
			continue
		}
		pid := s.Resource["process.pid"]
		if s.Kind != "server" || pid == fmt.Sprint(httpdPID) || s.Resource["service.name"] != "busybox" {
			t.Errorf("kernel span %q kind %s from pid %s (httpd is %d), service %q", s.Name, s.Kind, pid, httpdPID, s.Resource["service.name"])
		}
		pids[pid] = true
		switch s.Attrs["url.path"] {
		case "/chain":
			chain++
			if cs, ok := clients[s.ParentSpanID]; !ok || cs.TraceID != s.TraceID || s.Attrs["http.response.status_code"] != "200" {
				t.Errorf("backend span %s (parent %q, status %s) does not continue a gateway client span", s.SpanID, s.ParentSpanID, s.Attrs["http.response.status_code"])
			}
		case "/missing":
			missing++
			if s.Attrs["http.response.status_code"] != "404" {
				t.Errorf("/missing answered %s", s.Attrs["http.response.status_code"])
			}
		default:
			t.Errorf("unexpected kernel span for %q", s.Attrs["url.path"])
		}
	}
	if chain != requests || missing != 1 {
		t.Errorf("%d /chain and %d /missing kernel spans, want %d and 1", chain, missing, requests)
	}
	if len(pids) != requests+1 {
		t.Errorf("spans from %d processes, want one child per connection (%d)", len(pids), requests+1)
	}
	if stderr := a.Stderr(); strings.Contains(stderr, "unregistered process") || strings.Contains(stderr, "kernel_http_unanswered") {
		t.Errorf("children's records were dropped or left unanswered:\n%s", stderr)
	}
}

// node is the Node.js interpreter (scripts/setup.sh installs Debian's).
const node = "/usr/bin/node"

// TestKernelHTTPNode traces a Go gateway calling a Node.js http server
// (libuv: its responses go out through writev): every backend request must
// be one server span from the kernel path, joined to the gateway's trace
// through the injected header, with its path and status; requests sent
// straight to it (keep-alive, a 500, a streamed chunked answer that must
// last until its end) too.
func TestKernelHTTPNode(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "nodehttp", "server.js")
	backend, beAddr := testenv.StartSampleApp(t, node, script)
	gateway, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+beAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gateway.Process.Pid), "--pid", fmt.Sprint(backend.Process.Pid), "--output", "json")

	const requests = 20
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	for id := range requests {
		if body, want := getBody(t, c, fmt.Sprintf("http://%s/chain?id=%d", gwAddr, id)), fmt.Sprintf("[%d:node]", id); body != want {
			t.Fatalf("request %d: %q, want %q", id, body, want)
		}
	}
	for _, path := range []string{"/direct/1", "/direct/2", "/fail", "/stream"} {
		if body := getBody(t, c, "http://"+beAddr+path); path == "/stream" && body != "token0 token1 token2 token3 " {
			t.Fatalf("/stream: body %q", body)
		}
	}
	if !alive(backend.Process.Pid) || !alive(gateway.Process.Pid) {
		t.Fatal("a traced process died")
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	clients := map[string]observed{}
	for _, s := range spans {
		if s.Kind == "client" {
			clients[s.SpanID] = s
		}
	}
	byPath := map[string]int{}
	for _, s := range spans {
		if s.Attrs["zerotrace.source"] != "kernel" {
			continue
		}
		if s.Kind != "server" || s.Resource["process.pid"] != fmt.Sprint(backend.Process.Pid) {
			t.Errorf("kernel span %q kind %s from pid %s", s.Name, s.Kind, s.Resource["process.pid"])
		}
		path := s.Attrs["url.path"]
		byPath[path]++
		wantStatus := "200"
		if path == "/fail" {
			wantStatus = "500"
		}
		if s.Attrs["http.response.status_code"] != wantStatus || s.Name != "GET" {
			t.Errorf("%s: span %q status %s", path, s.Name, s.Attrs["http.response.status_code"])
		}
		if path == "/chain" {
			if cs, ok := clients[s.ParentSpanID]; !ok || cs.TraceID != s.TraceID {
				t.Errorf("backend span %s (parent %q) does not continue a gateway client span", s.SpanID, s.ParentSpanID)
			}
		}
		// Four pieces, each written 100 ms after the one before (libuv
		// writes chunk framing and data with writev), the end 100 ms
		// after the last: the span lasts until the end.
		if d := s.End.Sub(s.Start); path == "/stream" && d < 500*time.Millisecond {
			t.Errorf("/stream: span lasts %v, ends before its last chunk", d)
		}
	}
	want := map[string]int{"/chain": requests, "/direct/1": 1, "/direct/2": 1, "/fail": 1, "/stream": 1}
	if fmt.Sprint(byPath) != fmt.Sprint(want) {
		t.Errorf("kernel spans by path %v, want %v", byPath, want)
	}
}

// startHTTPD starts busybox httpd serving dir, a server that forks a child
// per connection, and returns its PID and address once it accepts.
func startHTTPD(t *testing.T, dir string) (int, string) {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%s: %v (scripts/setup.sh installs busybox-static)", busybox, err)
	}
	beAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// httpd dies of SIGTERM, which the harness takes for a crash: a shell
	// runs it, says where it listens, and stops it on SIGTERM.
	sh, _ := testenv.StartSampleApp(t, "/bin/sh", "-c", fmt.Sprintf(
		`%s httpd -f -p %s -h %s & trap 'kill $!; wait; exit 0' TERM; echo listening on %s; wait`, busybox, beAddr, dir, beAddr))
	httpdPID := 0
	deadline := time.Now().Add(testenv.Timeout(t, 30*time.Second))
	for httpdPID == 0 {
		if f := children(sh.Process.Pid); len(f) == 1 {
			fmt.Sscan(f[0], &httpdPID)
		} else if time.Now().After(deadline) {
			t.Fatalf("busybox httpd did not start under pid %d: children %q", sh.Process.Pid, f)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for {
		c, err := net.Dial("tcp", beAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("busybox httpd does not accept on %s: %v", beAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return httpdPID, beAddr
}
