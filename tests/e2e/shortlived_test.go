package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// agentGauges scrapes the agent's own gauges (zerotrace_agent_*,
// zerotrace_traced_processes) from /metrics.
func agentGauges(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	for _, g := range []string{"zerotrace_agent_goroutines", "zerotrace_agent_heap_live_bytes", "zerotrace_agent_resident_bytes", "zerotrace_traced_processes"} {
		if _, ok := out[g]; !ok {
			t.Fatalf("/metrics has no %s", g)
		}
	}
	return out
}

// TestShortLivedProcessesAreForgotten: a server that forks a child per
// connection, traced from the kernel with spans exported over OTLP to a
// real Jaeger, makes 1,000 short-lived traced processes. Once they have
// exited, the agent holds no more processes, goroutines or live heap than
// before them: nothing is kept per process that outlives it.
func TestShortLivedProcessesAreForgotten(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	j := jaeger.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpdPID, addr := startHTTPD(t, dir)
	service := fmt.Sprintf("e2e-forks-%d", time.Now().UnixNano())
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(httpdPID), "--output", "none",
		"--otlp-endpoint", j.OTLPEndpoint(), "--service-name", service, "--listen", "127.0.0.1:0", "--stats-interval", "0")
	m := mapAddr.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("the agent did not say where it serves /metrics:\n%s", a.Stderr())
	}
	base := "http://" + m[1]

	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	get := func(n int) {
		for i := range n {
			// A new connection per request: httpd forks per connection.
			req, _ := http.NewRequest("GET", "http://"+addr+"/hello", nil)
			req.Close = true
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
		}
	}
	// settled waits until the agent holds only the server itself again:
	// every child's exit was seen and forgotten.
	settled := func() map[string]float64 {
		deadline := time.Now().Add(testenv.Timeout(t, 30*time.Second))
		for {
			g := agentGauges(t, base)
			if g["zerotrace_traced_processes"] == 1 {
				return g
			}
			if time.Now().After(deadline) {
				t.Fatalf("the agent still holds %v processes, want 1 (the server)", g["zerotrace_traced_processes"])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// First fill what is bounded but not per process (the map's last
	// 4,096 call samples per edge, the last 1,000 closed connections) and
	// let the exporter reach its steady state.
	const children = 1000
	get(4500)
	before := settled()
	get(children)
	after := settled()

	if d := after["zerotrace_agent_goroutines"] - before["zerotrace_agent_goroutines"]; d > 2 {
		t.Errorf("goroutines %v before %d more traced processes, %v after", before["zerotrace_agent_goroutines"], children, after["zerotrace_agent_goroutines"])
	}
	// A process the agent kept would cost at least its resource and
	// exporter state, a few KB: a thousand of them, megabytes.
	const slack = 1 << 20
	if d := after["zerotrace_agent_heap_live_bytes"] - before["zerotrace_agent_heap_live_bytes"]; d > slack {
		t.Errorf("live heap grew by %.0f bytes over %d short-lived traced processes (before %.0f, after %.0f)",
			d, children, before["zerotrace_agent_heap_live_bytes"], after["zerotrace_agent_heap_live_bytes"])
	}
	t.Logf("before: %v; after: %v", before, after)

	// The spans went out: the children's server spans reach Jaeger under
	// the server's service name.
	a.stop()
	spans, err := j.WaitForSpans(context.Background(), service, 4500+children, testenv.Timeout(t, 30*time.Second))
	if err != nil || len(spans) < 4500+children {
		t.Errorf("Jaeger has %d spans of %s, want %d: %v", len(spans), service, 4500+children, err)
	}
}
