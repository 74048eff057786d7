package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// The tests of this file check where spans end, now that they end at the
// entry of a function that runs once the work is done rather than on a
// RET: HTTP/2 and TLS, HEAD, a handler that panics, a hijacked connection,
// a streamed response, a traceparent a proxy forwards, HTTP/2 round trips
// on an existing connection, and database/sql retries.

// spanByQuery finds the span whose url.query holds req=id.
func spanByQuery(spans []observed, kind, id string) []observed {
	var out []observed
	for _, s := range spans {
		q, _ := url.ParseQuery(s.Attrs["url.query"])
		if s.Kind == kind && q.Get("req") == id {
			out = append(out, s)
		}
	}
	return out
}

// oneSpan is the only span of kind for request id, or fails the test.
func oneSpan(t *testing.T, spans []observed, kind, id string) (observed, bool) {
	t.Helper()
	got := spanByQuery(spans, kind, id)
	if len(got) != 1 {
		t.Errorf("request %s: %d %s spans, want 1", id, len(got), kind)
		return observed{}, false
	}
	return got[0], true
}

// checkAttrs compares the attributes of s with want; "" wants the
// attribute absent.
func checkAttrs(t *testing.T, what string, s observed, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := s.Attrs[k]; v == "" && ok {
			t.Errorf("%s: %s = %q, want none", what, k, got)
		} else if v != "" && got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

// TestHTTP2AndTLSServerSpans serves the sample app over TLS too and sends
// requests over HTTP/2 and over HTTP/1.1 on TLS, HEAD requests included:
// each span has its status (an unwritten status is 200), its body size
// (none for HEAD), url.scheme https, network.local.* (through the TLS
// connection), the protocol version, and a 5xx is an error. Go 1.26
// bundles its HTTP/2 server in net/http, Go 1.27 moved it to
// net/http/internal/http2: both toolchains, with DWARF and stripped.
func TestHTTP2AndTLSServerSpans(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct{ name, toolchain, ldflags string }{
		{"default", "", ""},
		{"go1.27", "go1.27.3", ""},
		{"go1.27-stripped", "go1.27.3", "-s -w"},
	} {
		t.Run(tc.name, func(t *testing.T) { http2AndTLS(t, testenv.BuildSampleAppWith(t, tc.toolchain, tc.ldflags)) })
	}
}

func http2AndTLS(t *testing.T, app string) {
	zt := testenv.BuildZerotrace(t)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd, addr := testenv.StartSampleApp(t, app, "-tls-addr", tlsAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json")
	if strings.Contains(a.Stderr(), "net/http server degraded") {
		t.Errorf("the server instrumentation is degraded:\n%s", a.Stderr())
	}

	h2 := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second), Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true,
	}}
	h1tls := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second), Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
	}}
	h1 := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	type sent struct {
		id                   string
		proto, scheme, local string
		method, path, route  string
		status               int
		size                 string // http.response.body.size
	}
	var all []sent
	for i, r := range []struct {
		method, path, route string
		status              int
		size                string
	}{
		{"GET", "/hello", "/hello", 200, "5"},
		{"HEAD", "/hello", "/hello", 200, "0"},
		{"GET", "/users/7", "/users/{id}", 200, "27"},
		{"GET", "/fail", "/fail", 500, "20"},
		{"GET", "/missing/1", "", 404, "19"},
	} {
		for j, c := range []struct {
			client               *http.Client
			proto, scheme, local string
		}{{h2, "2", "https", tlsAddr}, {h1tls, "1.1", "https", tlsAddr}, {h1, "1.1", "http", addr}} {
			id := strconv.Itoa(i*10 + j)
			base := c.scheme + "://" + c.local
			req, err := http.NewRequest(r.method, base+r.path+"?req="+id, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", r.method, req.URL, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != r.status || strconv.Itoa(resp.ProtoMajor) != strings.Split(c.proto, ".")[0] {
				t.Fatalf("%s %s: status %d over HTTP/%d.%d, want %d over %s", r.method, req.URL, resp.StatusCode, resp.ProtoMajor, resp.ProtoMinor, r.status, c.proto)
			}
			all = append(all, sent{id, c.proto, c.scheme, c.local, r.method, r.path, r.route, r.status, r.size})
		}
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	for _, r := range all {
		s, ok := oneSpan(t, spans, "server", r.id)
		if !ok {
			continue
		}
		what := fmt.Sprintf("%s %s over %s %s", r.method, r.path, r.scheme, r.proto)
		host, port, _ := net.SplitHostPort(r.local)
		checkAttrs(t, what, s, map[string]string{
			"http.request.method":       r.method,
			"url.scheme":                r.scheme,
			"network.protocol.version":  r.proto,
			"http.response.status_code": strconv.Itoa(r.status),
			"http.response.body.size":   r.size,
			"http.route":                r.route,
			"network.local.address":     host,
			"network.local.port":        port,
		})
		wantStatus := "unset"
		if r.status >= 500 {
			wantStatus = "error"
		}
		if s.Status != wantStatus {
			t.Errorf("%s: status %q, want %q", what, s.Status, wantStatus)
		}
	}
}

// TestServerSpanEnds checks where HTTP/1.x server spans end: a handler
// that streams for 200 ms ends at its last byte; a handler that panics
// still ends, as an error; a handler that hijacks the connection ends when
// it returns, after it answered and closed the connection.
func TestServerSpanEnds(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	cmd, addr := testenv.StartSampleApp(t, testenv.BuildSampleApp(t))
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json")
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}

	// Streamed: lines every 20 ms for 200 ms.
	start := time.Now()
	resp, err := c.Get("http://" + addr + "/stream?ms=200&req=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	streamEnd := time.Now()
	if n := strings.Count(string(body), "\n"); n < 5 {
		t.Fatalf("/stream: %d lines", n)
	}
	// Panics: no response. On a connection of its own, which the client
	// does not retry the request on.
	once := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second), Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := once.Get("http://" + addr + "/panic?req=2"); err == nil {
		resp.Body.Close()
		t.Fatalf("/panic answered %d", resp.StatusCode)
	}
	// Hijacked: the answer comes at once, the handler returns 100 ms later.
	hijackStart := time.Now()
	resp, err = c.Get("http://" + addr + "/hijack?ms=100&req=3")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hijacked" {
		t.Fatalf("/hijack: %q", body)
	}
	// The span ends when the handler returns: wait for it.
	time.Sleep(300 * time.Millisecond)
	// And the server goes on serving.
	if err := getOK(c, "http://"+addr+"/hello?req=4"); err != nil {
		t.Fatal(err)
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	if s, ok := oneSpan(t, spans, "server", "1"); ok {
		if d := s.End.Sub(s.Start); d < 200*time.Millisecond {
			t.Errorf("/stream: span of %s, shorter than the 200 ms it streamed", d)
		}
		if s.Start.Before(start.Add(-clockSlack)) || s.End.After(streamEnd.Add(clockSlack)) || s.End.Before(start.Add(200*time.Millisecond)) {
			t.Errorf("/stream: span [%s, %s] does not end at the last byte, within the client's [%s, %s]",
				s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano), streamEnd.Format(time.RFC3339Nano))
		}
		checkAttrs(t, "/stream", s, map[string]string{"http.response.status_code": "200"})
	}
	if s, ok := oneSpan(t, spans, "server", "2"); ok {
		if s.Status != "error" || s.Attrs["error.type"] != "panic" || s.Name != "GET /panic" {
			t.Errorf("/panic: span %q status %q error.type %q, want an error of type panic", s.Name, s.Status, s.Attrs["error.type"])
		}
		checkAttrs(t, "/panic", s, map[string]string{"http.response.status_code": ""})
	}
	if s, ok := oneSpan(t, spans, "server", "3"); ok {
		if d := s.End.Sub(s.Start); d < 100*time.Millisecond {
			t.Errorf("/hijack: span of %s, shorter than the handler's 100 ms after the hijack", d)
		}
		if s.Start.Before(hijackStart.Add(-clockSlack)) || s.Name != "GET /hijack" || s.Status != "unset" {
			t.Errorf("/hijack: span %q status %q starts at %s, before the request at %s", s.Name, s.Status,
				s.Start.Format(time.RFC3339Nano), hijackStart.Format(time.RFC3339Nano))
		}
	}
	if _, ok := oneSpan(t, spans, "server", "4"); !ok {
		t.Errorf("no span for the request after the others")
	}
}

// TestProxyForwardedTraceparent traces a reverse proxy (the sample app's
// /proxy, net/http/httputil.ReverseProxy) and its backend, and sends
// requests with a traceparent, which the proxy forwards as it is: the
// backend's span must be a child of the proxy's client span, not of the
// proxy's own caller, with the header rewritten in place by sk-msg, or
// matched on the connection when nothing is injected. A traceparent the
// proxy's own code sets (of another trace) is kept.
func TestProxyForwardedTraceparent(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []string{injectMode(), "off"} {
		t.Run(mode, func(t *testing.T) { proxyForwarded(t, mode) })
	}
}

func proxyForwarded(t *testing.T, mode string) {
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	back, backAddr := testenv.StartSampleApp(t, app)
	front, frontAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+backAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(front.Process.Pid), "--pid", fmt.Sprint(back.Process.Pid),
		"--output", "json", "--inject", mode)

	const requests = 10
	const own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	callers := map[string][2]string{} // req id -> trace id, parent id sent
	for i := range requests {
		id := strconv.Itoa(i)
		trace, parent := fmt.Sprintf("%032x", 0x5eed0000+i), fmt.Sprintf("%016x", 0xca11e40000+i)
		req, _ := http.NewRequest("GET", "http://"+frontAddr+"/proxy/hello?req="+id, nil)
		req.Header.Set("Traceparent", "00-"+trace+"-"+parent+"-01")
		callers[id] = [2]string{trace, parent}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello" {
			t.Fatalf("/proxy/hello: %d %q", resp.StatusCode, body)
		}
	}
	// The proxy's own traceparent, of another trace, through /send.
	if err := getOK(c, "http://"+frontAddr+"/send?path=/hello%3Freq%3Downed&traceparent="+own); err != nil {
		t.Fatal(err)
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	frontPID, backPID := strconv.Itoa(front.Process.Pid), strconv.Itoa(back.Process.Pid)
	byPID := func(list []observed, pid string) []observed {
		var out []observed
		for _, s := range list {
			if s.Resource["process.pid"] == pid {
				out = append(out, s)
			}
		}
		return out
	}
	for id, caller := range callers {
		fs := byPID(spanByQuery(spans, "server", id), frontPID)
		bs := byPID(spanByQuery(spans, "server", id), backPID)
		var client []observed
		for _, s := range spans {
			if s.Kind == "client" && strings.HasSuffix(s.Attrs["url.full"], "?req="+id) {
				client = append(client, s)
			}
		}
		if len(fs) != 1 || len(bs) != 1 || len(client) != 1 {
			t.Errorf("request %s: %d proxy server, %d proxy client, %d backend server spans, want one each", id, len(fs), len(client), len(bs))
			continue
		}
		if fs[0].TraceID != caller[0] || fs[0].ParentSpanID != caller[1] {
			t.Errorf("request %s: proxy server span in trace %s with parent %s, want the caller's %s, %s", id, fs[0].TraceID, fs[0].ParentSpanID, caller[0], caller[1])
		}
		if client[0].TraceID != caller[0] || client[0].ParentSpanID != fs[0].SpanID {
			t.Errorf("request %s: proxy client span in trace %s with parent %s, want %s, the proxy's server span %s", id, client[0].TraceID, client[0].ParentSpanID, caller[0], fs[0].SpanID)
		}
		if bs[0].TraceID != caller[0] || bs[0].ParentSpanID != client[0].SpanID {
			t.Errorf("request %s: backend server span in trace %s with parent %s, want %s, the proxy's client span %s (not the caller's %s)",
				id, bs[0].TraceID, bs[0].ParentSpanID, caller[0], client[0].SpanID, caller[1])
		}
	}
	owned := byPID(spanByQuery(spans, "server", "owned"), backPID)
	if len(owned) != 1 || owned[0].TraceID != own[3:35] || owned[0].ParentSpanID != own[36:52] {
		t.Errorf("the traceparent the proxy set itself was not kept: %+v", owned)
	}
	if mode == "sk-msg" {
		counts := injectCountsOf(t, a.Stderr())
		if counts["replaced_forwarded"] != requests || counts["kept_existing"] != 1 {
			t.Errorf("injection counts %v, want replaced_forwarded=%d kept_existing=1", counts, requests)
		}
	}
}

// TestClientHTTP2RoundTrips sends requests through the sample app's client
// to an HTTPS server that speaks HTTP/2: the first round trip dials, the
// others go through the alternate round tripper on the existing
// connection, which ends its spans on its RETs. Every one is a client span
// with its status.
func TestClientHTTP2RoundTrips(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	_, _ = testenv.StartSampleApp(t, app, "-tls-addr", tlsAddr)
	gw, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "https://"+tlsAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gw.Process.Pid), "--output", "json")
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	const requests = 8
	for i := range requests {
		path := url.QueryEscape(fmt.Sprintf("/users/%d?req=%d", i, i))
		if err := getOK(c, "http://"+gwAddr+"/send?path="+path); err != nil {
			t.Fatal(err)
		}
	}
	if err := getStatus(c, "http://"+gwAddr+"/send?path="+url.QueryEscape("/fail?req=f"), 500); err != nil {
		t.Fatal(err)
	}
	a.stop()
	spans := fromJSON(a.jsonSpans())
	for i := range requests {
		var got []observed
		for _, s := range spans {
			if s.Kind == "client" && strings.HasSuffix(s.Attrs["url.full"], fmt.Sprintf("?req=%d", i)) {
				got = append(got, s)
			}
		}
		if len(got) != 1 {
			t.Errorf("round trip %d: %d client spans, want 1", i, len(got))
			continue
		}
		checkAttrs(t, fmt.Sprintf("round trip %d", i), got[0], map[string]string{"http.response.status_code": "200", "http.request.method": "GET"})
	}
	var failed int
	for _, s := range spans {
		if s.Kind == "client" && strings.HasSuffix(s.Attrs["url.full"], "?req=f") {
			failed++
			if s.Status != "error" || s.Attrs["http.response.status_code"] != "500" {
				t.Errorf("the failing round trip: status %q code %q", s.Status, s.Attrs["http.response.status_code"])
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d client spans for the failing round trip, want 1", failed)
	}
}

// getStatus gets url and wants status.
func getStatus(c *http.Client, url string, status int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, status)
	}
	return nil
}

// TestDatabaseRetries calls database/sql through a driver whose first
// attempt fails with driver.ErrBadConn, which database/sql retries by
// itself: each call (a query and an exec of DB, and of a prepared
// statement) is one span, with the outcome of its retry, child of its
// request's server span.
func TestDatabaseRetries(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	cmd, addr := testenv.StartSampleApp(t, testenv.BuildDBApp(t))
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json")
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	kinds := map[string]string{"query": "SELECT retried", "exec": "UPDATE retried", "stmtquery": "SELECT retried", "stmtexec": "UPDATE retried"}
	const rounds = 3
	for i := range rounds {
		for kind := range kinds {
			if err := getOK(c, fmt.Sprintf("http://%s/retry?kind=%s&id=%d&req=%s%d", addr, kind, i, kind, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.stop()
	spans := fromJSON(a.jsonSpans())
	for i := range rounds {
		for kind, name := range kinds {
			id := fmt.Sprintf("%s%d", kind, i)
			server, ok := oneSpan(t, spans, "server", id)
			if !ok {
				continue
			}
			var db []observed
			for _, s := range spans {
				if s.Kind == "client" && s.TraceID == server.TraceID && s.ParentSpanID == server.SpanID {
					db = append(db, s)
				}
			}
			if len(db) != 1 {
				t.Errorf("%s: %d database spans under the request, want 1 (the call and its retry)", id, len(db))
				continue
			}
			if db[0].Name != name || db[0].Status != "unset" {
				t.Errorf("%s: span %q status %q, want %q unset", id, db[0].Name, db[0].Status, name)
			}
			if strings.HasSuffix(kind, "exec") && db[0].Attrs["zerotrace.db.rows_affected"] != "1" {
				t.Errorf("%s: rows affected %q, want 1", id, db[0].Attrs["zerotrace.db.rows_affected"])
			}
		}
	}
}

// uprobeLine is the agent's debug line for one uprobe attached.
var uprobeLine = regexp.MustCompile(`msg="uprobe attached" .*function=("[^"]*"|\S+) program=\S+ at=(\S+) offset=\S+ instruction=(\S+) cost=(\S+)`)

// TestUprobeCostsLogged: at debug level the agent says, per uprobe, which
// instruction it is on and whether the kernel emulates it: the entries of
// the sample app's probes are all on the emulated stack-check JBE; a probe
// inside a function (the jump after a call whose result it reads) is on an
// emulated instruction too; any RET left is single-stepped.
func TestUprobeCostsLogged(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	cmd, addr := testenv.StartSampleApp(t, testenv.BuildSampleApp(t))
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json", "--log-level", "debug")
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	if err := getOK(c, "http://"+addr+"/hello"); err != nil {
		t.Fatal(err)
	}
	a.stop()
	lines := uprobeLine.FindAllStringSubmatch(a.Stderr(), -1)
	seen := map[string]bool{}
	for _, m := range lines {
		fn, at, inst, cost := strings.Trim(m[1], `"`), m[2], m[3], m[4]
		seen[fn] = true
		switch {
		case at == "entry" && (inst != "JBE" || cost != "emulated"):
			t.Errorf("%s: entry uprobe on %s, %s; want the emulated JBE", fn, inst, cost)
		case at == "RET" && (inst != "RET" || cost != "single-stepped"):
			t.Errorf("%s: uprobe at a RET on %s, %s; want RET, single-stepped", fn, inst, cost)
		case at == "inside" && cost != "emulated":
			t.Errorf("%s: uprobe inside the function on %s, %s; want an emulated instruction", fn, inst, cost)
		case at != "entry" && at != "RET" && at != "inside":
			t.Errorf("%s: uprobe at %q", fn, at)
		}
	}
	for _, fn := range []string{"net/http.serverHandler.ServeHTTP", "net/http.(*connReader).abortPendingRead", "net/http.(*Transport).roundTrip"} {
		if !seen[fn] {
			t.Errorf("no uprobe logged on %s (%d lines)", fn, len(lines))
		}
	}
}
