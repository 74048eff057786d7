package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestSameHostTraces runs three services on this host, gateway → orders →
// inventory, traced by one agent. The gateway's handler calls orders twice
// in parallel from goroutines it starts; orders calls inventory once. No
// header is injected: each server span must find the client span that
// caused it through the connection's addresses. Every request must become
// exactly one trace with the right tree, in the JSON output and in Jaeger,
// under 50 concurrent requests on keep-alive connections.
func TestSameHostTraces(t *testing.T) {
	testenv.RequireRoot(t)
	sameHostTraces(t, jaeger.Start(t))
}

// TestSameHostTracesJSON checks the same through the JSON output only, with
// injection turned off so that the connection's addresses are all that
// joins the services. Needing no Jaeger, it is the one the kernel matrix
// runs in its guests. (TestSameHostTraces runs with the default injection,
// where each server sees both the header and the connection context.)
func TestSameHostTracesJSON(t *testing.T) {
	testenv.RequireRoot(t)
	sameHostTraces(t, nil)
}

func sameHostTraces(t *testing.T, j *jaeger.Jaeger) {
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	inventory, invAddr := testenv.StartSampleApp(t, app)
	orders, ordAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+invAddr)
	gateway, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+ordAddr)
	role := map[string]string{
		fmt.Sprint(gateway.Process.Pid):   "gateway",
		fmt.Sprint(orders.Process.Pid):    "orders",
		fmt.Sprint(inventory.Process.Pid): "inventory",
	}
	service := fmt.Sprintf("e2e-samehost-%d", time.Now().UnixNano())
	args := []string{"attach",
		"--pid", fmt.Sprint(gateway.Process.Pid), "--pid", fmt.Sprint(orders.Process.Pid), "--pid", fmt.Sprint(inventory.Process.Pid),
		"--output", "json", "--service-name", service}
	if j != nil {
		args = append(args, "--otlp-endpoint", j.OTLPEndpoint())
	} else {
		// Matching by connection alone, with no header added: what
		// joins services on this host when injection is impossible.
		args = append(args, "--inject", "off")
	}
	a := startAgent(t, zt, nil, args...)

	const requests, workers = 50, 50
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	timeout := testenv.Timeout(t, 20*time.Second)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: timeout}
			for id := w; id < requests; id += workers {
				resp, err := c.Get(fmt.Sprintf("http://%s/chain?fan=2&id=%d", gwAddr, id))
				if err != nil {
					errs <- err
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("[[%d:leaf],[%d:leaf]]", id, id)
				if resp.StatusCode != 200 || string(body) != want {
					errs <- fmt.Errorf("request %d: status %d body %q, want %q", id, resp.StatusCode, body, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a.stop()

	checkChainTraces(t, "json output", fromJSON(a.jsonSpans()), role, requests)
	if j == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spans, err := j.WaitForSpans(ctx, service, requests*9, 30*time.Second)
	if err != nil {
		t.Fatalf("reading spans back from jaeger: %v", err)
	}
	checkChainTraces(t, "jaeger", fromJaeger(spans), role, requests)
}

// checkChainTraces asserts that spans form exactly one trace per request,
// each the tree gateway server → 2 × (gateway client → orders server →
// orders client → inventory server).
func checkChainTraces(t *testing.T, source string, spans []observed, role map[string]string, requests int) {
	t.Helper()
	const perTrace = 9
	if len(spans) != requests*perTrace {
		t.Errorf("%s: %d spans, want %d (%d per request)", source, len(spans), requests*perTrace, perTrace)
	}
	byTrace := map[string]map[string]observed{}
	for _, s := range spans {
		if byTrace[s.TraceID] == nil {
			byTrace[s.TraceID] = map[string]observed{}
		}
		byTrace[s.TraceID][s.SpanID] = s
	}
	if len(byTrace) != requests {
		t.Errorf("%s: spans fall into %d traces, want one per request (%d)", source, len(byTrace), requests)
	}
	seen := map[string]bool{}
	for traceID, tr := range byTrace {
		bad := func(format string, args ...any) {
			t.Helper()
			var b strings.Builder
			for _, s := range tr {
				fmt.Fprintf(&b, "\n  %s %s parent=%q %s %s %s %s", s.SpanID, s.Kind, s.ParentSpanID, role[s.Resource["process.pid"]],
					s.Name, s.Attrs["url.query"], s.Attrs["url.full"])
			}
			t.Errorf("%s: trace %s: %s%s", source, traceID, fmt.Sprintf(format, args...), b.String())
		}
		if len(tr) != perTrace {
			bad("%d spans, want %d", len(tr), perTrace)
			continue
		}
		var id string
		count := map[string]int{}
		ok := true
		for _, s := range tr {
			r := role[s.Resource["process.pid"]]
			key := r + " " + s.Kind
			count[key]++
			if s.Kind == "server" {
				q, _ := url.ParseQuery(s.Attrs["url.query"])
				if id == "" {
					id = q.Get("id")
				} else if q.Get("id") != id {
					bad("server span %s has id %q, the trace's others %q (cross-talk)", s.SpanID, q.Get("id"), id)
					ok = false
				}
			}
			if s.ParentSpanID == "" {
				if key != "gateway server" {
					bad("root span %s is %s, want the gateway's server span", s.SpanID, key)
					ok = false
				}
				continue
			}
			p, found := tr[s.ParentSpanID]
			if !found {
				bad("span %s (%s) has parent %s, which is not in the trace", s.SpanID, key, s.ParentSpanID)
				ok = false
				continue
			}
			pr := role[p.Resource["process.pid"]]
			var want string
			switch key {
			case "gateway client":
				want = "gateway server"
			case "orders server":
				want = "gateway client"
			case "orders client":
				want = "orders server"
			case "inventory server":
				want = "orders client"
			default:
				bad("unexpected span %s: %s", s.SpanID, key)
				ok = false
				continue
			}
			if got := pr + " " + p.Kind; got != want {
				bad("span %s (%s) has a %s parent, want %s", s.SpanID, key, got, want)
				ok = false
			}
			if s.Start.Before(p.Start) || s.End.After(p.End.Add(clockSlack)) {
				bad("span %s (%s) [%s, %s] is not inside its parent [%s, %s]", s.SpanID, key,
					s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano),
					p.Start.Format(time.RFC3339Nano), p.End.Format(time.RFC3339Nano))
				ok = false
			}
		}
		for key, want := range map[string]int{"gateway server": 1, "gateway client": 2, "orders server": 2, "orders client": 2, "inventory server": 2} {
			if count[key] != want {
				bad("%d %s spans, want %d", count[key], key, want)
				ok = false
			}
		}
		if ok {
			if seen[id] {
				t.Errorf("%s: request %s has two traces", source, id)
			}
			seen[id] = true
		}
	}
}
