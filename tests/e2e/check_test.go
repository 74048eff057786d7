package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export"
)

// observed is a span as read back from an exporter, normalised so that the
// JSON output and Jaeger can be checked by the same code.
type observed struct {
	TraceID, SpanID, ParentSpanID string
	Name, Kind, Status            string
	Start, End                    time.Time
	Attrs, Resource               map[string]string
}

func str(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func strMap(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = str(v)
	}
	return out
}

func fromJSON(spans []export.JSONSpan) []observed {
	out := make([]observed, len(spans))
	for i, s := range spans {
		out[i] = observed{
			TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
			Name: s.Name, Kind: s.Kind, Status: s.StatusCode,
			Start: time.Unix(0, s.StartUnixNano), End: time.Unix(0, s.EndUnixNano),
			Attrs: strMap(s.Attributes), Resource: strMap(s.Resource),
		}
	}
	return out
}

// expectation is what every span must say about the traced process.
type expectation struct {
	service   string
	pid       int
	goVersion string
	exeName   string
	addr      string // the sample app's listen address
}

// clockSlack allows for the conversion from the kernel's monotonic clock to
// wall-clock time, which the issue bounds at 1 ms.
const clockSlack = time.Millisecond

// checkServerSpans asserts that spans hold exactly one span per request,
// with the right attributes and timing.
func checkServerSpans(t *testing.T, source string, spans []observed, reqs []*request, want expectation) {
	t.Helper()
	if len(spans) != len(reqs) {
		t.Errorf("%s: got %d spans, want exactly %d", source, len(spans), len(reqs))
	}
	byID := map[string]observed{}
	for _, s := range spans {
		q, err := url.ParseQuery(s.Attrs["url.query"])
		id := q.Get("req")
		if err != nil || id == "" {
			t.Errorf("%s: span %q with url.query %q does not belong to a test request", source, s.Name, s.Attrs["url.query"])
			continue
		}
		if _, dup := byID[id]; dup {
			t.Errorf("%s: two spans for request %s", source, id)
		}
		byID[id] = s
	}
	host, port, _ := net.SplitHostPort(want.addr)
	for _, r := range reqs {
		s, ok := byID[strconv.Itoa(r.ID)]
		if !ok {
			t.Errorf("%s: no span for request %d (%s %s)", source, r.ID, r.Method, r.Path)
			continue
		}
		errorf := func(format string, args ...any) {
			t.Helper()
			t.Errorf("%s: request %d (%s %s): %s", source, r.ID, r.Method, r.Path, fmt.Sprintf(format, args...))
		}
		wantName := r.Method
		if r.Route != "" {
			wantName += " " + r.Route
		}
		if s.Name != wantName {
			errorf("name %q, want %q", s.Name, wantName)
		}
		if s.Kind != "server" {
			errorf("kind %q, want server", s.Kind)
		}
		if len(s.TraceID) != 32 || len(s.SpanID) != 16 || s.ParentSpanID != "" {
			errorf("ids trace=%q span=%q parent=%q: want 32 and 16 hex digits and no parent", s.TraceID, s.SpanID, s.ParentSpanID)
		}
		wantStatus := "unset"
		if r.Status >= 500 {
			wantStatus = "error"
		}
		if s.Status != wantStatus {
			errorf("status %q, want %q", s.Status, wantStatus)
		}
		attrs := map[string]string{
			"http.request.method":       r.Method,
			"url.path":                  r.Path,
			"url.scheme":                "http",
			"http.response.status_code": strconv.Itoa(r.Status),
			"server.address":            host,
			"server.port":               port,
			"client.address":            "127.0.0.1",
			"network.peer.address":      "127.0.0.1",
			"network.peer.port":         strconv.Itoa(r.PeerPort),
			"network.protocol.version":  "1.1",
		}
		if r.Route != "" {
			attrs["http.route"] = r.Route
		} else if v, ok := s.Attrs["http.route"]; ok {
			errorf("http.route %q, want none", v)
		}
		if r.Body != "" {
			attrs["http.request.body.size"] = strconv.Itoa(len(r.Body))
		}
		for k, v := range attrs {
			if got := s.Attrs[k]; got != v {
				errorf("%s = %q, want %q", k, got, v)
			}
		}
		res := map[string]string{
			"service.name":            want.service,
			"process.pid":             strconv.Itoa(want.pid),
			"process.runtime.version": want.goVersion,
			"process.executable.name": want.exeName,
			"telemetry.sdk.name":      "zerotrace",
		}
		for k, v := range res {
			if got := s.Resource[k]; got != v {
				errorf("resource %s = %q, want %q", k, got, v)
			}
		}
		if s.Resource["host.name"] == "" {
			errorf("resource host.name missing")
		}
		// The server handled the request strictly inside the interval in
		// which the client sent it and read the answer.
		if s.Start.Before(r.Start.Add(-clockSlack)) || s.End.After(r.End.Add(clockSlack)) || !s.End.After(s.Start) {
			errorf("span [%s, %s] not inside the client's [%s, %s]",
				s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano),
				r.Start.Format(time.RFC3339Nano), r.End.Format(time.RFC3339Nano))
		}
		if r.Path == "/slow" && s.End.Sub(s.Start) < 15*time.Millisecond {
			errorf("duration %s shorter than the handler's 15ms sleep", s.End.Sub(s.Start))
		}
	}
}

// apiConn is one connection of the agent's /api/connections.
type apiConn struct {
	PID           int    `json:"pid"`
	Role          string `json:"role"`
	Local         string `json:"local"`
	Remote        string `json:"remote"`
	Before        bool   `json:"opened_before_attach"`
	Closed        any    `json:"closed"`
	BytesReceived uint64 `json:"bytes_received"`
	BytesSent     uint64 `json:"bytes_sent"`
	PeerPID       int    `json:"peer_pid"`
}

// connections reads the connection table of the agent whose endpoint is
// base ("http://HOST:PORT").
func connections(t *testing.T, base string) []apiConn {
	t.Helper()
	resp, err := http.Get(base + "/api/connections")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var conns []apiConn
	if err := json.NewDecoder(resp.Body).Decode(&conns); err != nil {
		t.Fatal(err)
	}
	return conns
}
