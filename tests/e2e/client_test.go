package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestClientSpansAreChildren traces a gateway that calls a downstream
// service four times per request, from its handler goroutine, from two
// goroutines it starts and from a goroutine started by one of those. Under
// concurrent requests every call must be a CLIENT span, child of the server
// span of the request that made it, in its trace, and nowhere else.
func TestClientSpansAreChildren(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	_, downstream := testenv.StartSampleApp(t, app)
	gw, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+downstream)

	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gw.Process.Pid), "--output", "json", "--service-name", "gateway")
	if !strings.Contains(a.Stderr(), "net/http client") || !strings.Contains(a.Stderr(), "goroutine ancestry") {
		t.Fatalf("the client and goroutine probes were not attached:\n%s", a.Stderr())
	}

	const requests, workers = 50, 10
	ids := make(chan int, requests)
	for i := range requests {
		ids <- i
	}
	close(ids)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 20 * time.Second}
			for id := range ids {
				resp, err := c.Get(fmt.Sprintf("http://%s/fanout?id=%d", gwAddr, id))
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[200,200,500,404]" {
						err = fmt.Errorf("status %d, body %q", resp.StatusCode, body)
					}
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("request %d: %v", id, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("requests failed: %v", failures)
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	if len(spans) != requests*5 {
		t.Errorf("got %d spans, want exactly %d (one server and four client spans per request)", len(spans), requests*5)
	}
	byTrace := map[string][]observed{}
	for _, s := range spans {
		byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
	}
	if len(byTrace) != requests {
		t.Errorf("spans fall into %d traces, want %d", len(byTrace), requests)
	}
	for traceID, tr := range byTrace {
		var server *observed
		var clients []observed
		for i, s := range tr {
			switch s.Kind {
			case "server":
				if server != nil {
					t.Errorf("trace %s has two server spans", traceID)
				}
				server = &tr[i]
			case "client":
				clients = append(clients, s)
			default:
				t.Errorf("trace %s: span %q of kind %q", traceID, s.Name, s.Kind)
			}
		}
		if server == nil {
			t.Errorf("trace %s has no server span (%d client spans are orphans)", traceID, len(clients))
			continue
		}
		q, _ := url.ParseQuery(server.Attrs["url.query"])
		id := q.Get("id")
		if server.Name != "GET /fanout" || server.ParentSpanID != "" || id == "" {
			t.Errorf("trace %s: server span %q parent %q query %q", traceID, server.Name, server.ParentSpanID, server.Attrs["url.query"])
		}
		want := map[string]string{
			"http://" + downstream + "/hello?from=fanout&id=" + id:     "200",
			"http://" + downstream + "/users/" + id + "?from=fanout":   "200",
			"http://" + downstream + "/fail?from=fanout&id=" + id:      "500",
			"http://" + downstream + "/missing/" + id + "?from=fanout": "404",
		}
		if len(clients) != len(want) {
			t.Errorf("trace %s (request %s): %d client spans, want %d", traceID, id, len(clients), len(want))
		}
		host, port, _ := strings.Cut(downstream, ":")
		for _, c := range clients {
			full := c.Attrs["url.full"]
			status, ok := want[full]
			if !ok {
				t.Errorf("trace %s (request %s): client span for %q, which another request made", traceID, id, full)
				continue
			}
			delete(want, full)
			if c.ParentSpanID != server.SpanID {
				t.Errorf("request %s: client span %s has parent %q, want the server span %s", id, full, c.ParentSpanID, server.SpanID)
			}
			if c.Name != "GET" || c.Attrs["http.request.method"] != "GET" || c.Attrs["http.response.status_code"] != status ||
				c.Attrs["server.address"] != host || c.Attrs["server.port"] != port ||
				c.Attrs["network.peer.address"] != host || c.Attrs["network.peer.port"] != port {
				t.Errorf("request %s: client span %s: name %q attrs %v", id, full, c.Name, c.Attrs)
			}
			wantStatus := "unset"
			if status >= "400" {
				wantStatus = "error"
			}
			if c.Status != wantStatus {
				t.Errorf("request %s: client span %s status %q, want %q", id, full, c.Status, wantStatus)
			}
			if c.Start.Before(server.Start) || c.End.After(server.End) {
				t.Errorf("request %s: client span %s [%s, %s] outside its server span [%s, %s]", id, full,
					c.Start.Format(time.RFC3339Nano), c.End.Format(time.RFC3339Nano),
					server.Start.Format(time.RFC3339Nano), server.End.Format(time.RFC3339Nano))
			}
		}
		for full := range want {
			t.Errorf("request %s: no client span for %s", id, full)
		}
	}
}

// TestClientTransportError checks that a round trip that fails without a
// response is an error span naming the error's type.
func TestClientTransportError(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	// Nothing listens on the downstream port: every call is refused.
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	gw, gwAddr := testenv.StartSampleApp(t, testenv.BuildSampleApp(t), "-downstream", "http://"+closed)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gw.Process.Pid), "--output", "json")
	resp, err := http.Get("http://" + gwAddr + "/fanout?id=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("gateway answered %d, want 502", resp.StatusCode)
	}
	a.stop()
	var clients int
	for _, s := range fromJSON(a.jsonSpans()) {
		if s.Kind != "client" {
			continue
		}
		clients++
		if s.Status != "error" || s.Attrs["error.type"] == "" || s.Attrs["http.response.status_code"] != "" {
			t.Errorf("failed round trip: status %q error.type %q status code %q", s.Status, s.Attrs["error.type"], s.Attrs["http.response.status_code"])
		}
	}
	if clients != 4 {
		t.Errorf("got %d client spans, want 4", clients)
	}
}
