package server

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/events/eventstest"
)

func TestDecodeHTTPServer(t *testing.T) {
	var e serverHttpServerEvent
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = record.Type, 77, 2_000_000_000
	e.StartNs = 1_500_000_000
	e.Goid = 9
	e.ContentLength = 12
	e.RespWritten = 34
	e.Status = 404
	e.ProtoMajor, e.ProtoMinor = 1, 1
	e.Info = infoResponseKnown | infoLocalAddr
	e.LocalIpLen = 4
	copy(e.LocalIp[:], []byte{127, 0, 0, 1})
	e.LocalPort = 8080
	e.MethodLen = eventstest.PutString(e.Method[:], "GET")
	e.PathLen = eventstest.PutString(e.Path[:], "/a/\xffb")
	e.QueryLen = eventstest.PutString(e.Query[:], "x=1")
	e.HostLen = eventstest.PutString(e.Host[:], "example.com:8080")
	e.PatternLen = eventstest.PutString(e.Pattern[:], "GET /a/{x}")
	e.RemoteLen = eventstest.PutString(e.Remote[:], "127.0.0.1:5555")
	e.Truncated = 1

	clock := events.FixedClock(1_700_000_000_000_000_000)
	ev, err := record.Decode(eventstest.Raw(&e), &events.Decoder{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := ev.(*model.Span); !ok || s.HTTP == nil {
		t.Fatalf("decoded %T, want an HTTP span", ev)
	}
	r := decode(&e, clock)
	want := Request{
		PID: 77, GoroutineID: 9,
		Start:  time.Unix(0, 1_700_000_001_500_000_000),
		End:    time.Unix(0, 1_700_000_002_000_000_000),
		Method: "GET", Path: "/a/\uFFFDb", RawQuery: "x=1", Host: "example.com:8080",
		Pattern: "GET /a/{x}", RemoteAddr: "127.0.0.1:5555",
		ProtoMajor: 1, ProtoMinor: 1, ContentLength: 12,
		ResponseKnown: true, Status: 404, ResponseBodySize: 34,
		Local:     netip.MustParseAddrPort("127.0.0.1:8080"),
		Truncated: true,
	}
	if *r != want {
		t.Errorf("decoded\n %+v\nwant\n %+v", *r, want)
	}
}

// A status net/http could never have written is garbage, not a status.
func TestDecodeDropsImpossibleStatus(t *testing.T) {
	var e serverHttpServerEvent
	e.Hdr.Type = record.Type
	e.Info = infoResponseKnown
	e.Status = 42
	if _, err := record.Decode(eventstest.Raw(&e), &events.Decoder{Clock: events.NewClock()}); err != nil {
		t.Fatal(err)
	}
	if r := decode(&e, events.NewClock()); r.ResponseKnown || r.Status != 0 {
		t.Errorf("status 42 reported: %+v", r)
	}
}

// The string lengths come from the kernel side; a length beyond the array
// must never read past it.
func TestDecodeClampsLengths(t *testing.T) {
	var e serverHttpServerEvent
	e.Hdr.Type = record.Type
	e.MethodLen = 60000
	eventstest.PutString(e.Method[:], "ABCDEFGHIJKLMNOP")
	if _, err := record.Decode(eventstest.Raw(&e), &events.Decoder{Clock: events.NewClock()}); err != nil {
		t.Fatal(err)
	}
	if got := decode(&e, events.NewClock()).Method; got != "ABCDEFGHIJKLMNOP" {
		t.Errorf("method %q", got)
	}
}

func TestHTTPServerSpan(t *testing.T) {
	c := eventstest.Correlator()
	p := model.NewProcess(10, "/usr/local/bin/gateway", "", "go1.26.8")
	c.Register(p)
	start := time.Unix(100, 0)
	r := &Request{
		PID: 10, Start: start, End: start.Add(3 * time.Millisecond),
		Method: "GET", Path: "/users/7", RawQuery: "api_key=abc&page=2", Host: "api.example.com:8443",
		Pattern: "GET api.example.com/users/{id}", RemoteAddr: "[::ffff:10.1.2.3]:40000",
		ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1,
		ResponseKnown: true, Status: 503, ResponseBodySize: 10,
		Local: netip.MustParseAddrPort("10.0.0.1:8443"), TLS: true,
	}
	s := c.Handle(r.Span())
	if s == nil {
		t.Fatal("no span")
	}
	if s.Name != "GET /users/{id}" || s.Kind != trace.SpanKindServer || s.Status != codes.Error {
		t.Errorf("span %q kind %v status %v", s.Name, s.Kind, s.Status)
	}
	if !s.TraceID.IsValid() || !s.SpanID.IsValid() || s.ParentSpanID.IsValid() {
		t.Errorf("ids: %s %s %s", s.TraceID, s.SpanID, s.ParentSpanID)
	}
	if s.Process != p || !s.Start.Equal(r.Start) || !s.End.Equal(r.End) {
		t.Errorf("process or times not carried over")
	}
	want := map[string]any{
		"http.request.method":       "GET",
		"url.path":                  "/users/7",
		"url.scheme":                "https",
		"url.query":                 "api_key=REDACTED&page=2",
		"http.route":                "/users/{id}",
		"http.response.status_code": int64(503),
		"http.response.body.size":   int64(10),
		"server.address":            "api.example.com",
		"server.port":               int64(8443),
		"client.address":            "10.1.2.3",
		"network.peer.address":      "10.1.2.3",
		"network.peer.port":         int64(40000),
		"network.protocol.version":  "1.1",
		"network.local.address":     "10.0.0.1",
		"network.local.port":        int64(8443),
		"error.type":                "503",
	}
	got := eventstest.Attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, ok := got["http.request.body.size"]; ok {
		t.Errorf("unknown request body size reported")
	}
}

func TestHTTPServerSpanEdgeCases(t *testing.T) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(1, "/x", "svc", "go1.27.0"))
	// Nothing written: net/http sends 200. No pattern: no route.
	s := c.Handle((&Request{PID: 1, Method: "GET", Path: "/", ResponseKnown: true, Host: "localhost"}).Span())
	a := eventstest.Attrs(s)
	if s.Name != "GET" || a["http.response.status_code"] != int64(200) || s.Status != codes.Unset {
		t.Errorf("empty handler: name %q attrs %v status %v", s.Name, a, s.Status)
	}
	if _, ok := a["http.route"]; ok {
		t.Errorf("route without pattern")
	}
	// Unknown response writer: no status at all, never an error.
	s = c.Handle((&Request{PID: 1, Method: "BREW", Path: "/pot"}).Span())
	a = eventstest.Attrs(s)
	if _, ok := a["http.response.status_code"]; ok {
		t.Errorf("status reported for an unknown writer")
	}
	if s.Name != "HTTP" || a["http.request.method"] != "_OTHER" || a["http.request.method_original"] != "BREW" {
		t.Errorf("non-standard method: %q %v", s.Name, a)
	}
	// 4xx is not a server error.
	s = c.Handle((&Request{PID: 1, Method: "GET", ResponseKnown: true, Status: 404}).Span())
	if s.Status != codes.Unset {
		t.Errorf("404 marked %v", s.Status)
	}
	// Events from unknown processes are dropped and counted.
	if s := c.Handle((&Request{PID: 99}).Span()); s != nil || c.Stats().UnknownProcess.Load() != 1 {
		t.Errorf("unknown process: span %v, counted %d", s, c.Stats().UnknownProcess.Load())
	}
}

// TestSpansAreRedacted: what leaves the correlator has been through the
// default redactor, each attribute read by its kind.
func TestSpansAreRedacted(t *testing.T) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(10, "/bin/app", "", "go1.26.8"))
	start := time.Unix(100, 0)
	srv := c.Handle((&Request{
		PID: 10, Start: start, End: start.Add(time.Millisecond),
		Method: "GET", Path: "/users/bob@example.com/orders", RawQuery: "Password=x&user=bob&X-Amz-Signature=deadbeef&n=2",
		Pattern: "GET /users/{email}/orders", ContentLength: -1, ResponseKnown: true, Status: 200,
		TraceState: "vendor=token:abc",
	}).Span())
	got := map[string]any{}
	for k, v := range eventstest.Attrs(srv) {
		got["server "+k] = v
	}
	for k, want := range map[string]string{
		"server url.path":   "/users/REDACTED/orders",
		"server url.query":  "Password=REDACTED&user=bob&X-Amz-Signature=REDACTED&n=2",
		"server http.route": "/users/{email}/orders",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
}

func BenchmarkHTTPServerSpan(b *testing.B) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(1, "/x", "", "go1.26.8"))
	r := &Request{
		PID: 1, Method: "GET", Path: "/users/7", RawQuery: "page=2", Host: "localhost:8080",
		Pattern: "GET /users/{id}", RemoteAddr: "127.0.0.1:40000", ProtoMajor: 1, ProtoMinor: 1,
		ResponseKnown: true, Status: 200, Local: netip.MustParseAddrPort("127.0.0.1:8080"),
	}
	b.ReportAllocs()
	for b.Loop() {
		s := c.Handle(r.Span())
		// What the sinks do once they exported it (export.Fanout).
		s.Hold(1)
		s.Release()
	}
}

// BenchmarkHTTPServerRecord takes one record from the ring buffer's bytes
// through the decoder and the correlator to the sinks' release.
func BenchmarkHTTPServerRecord(b *testing.B) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(1, "/x", "", "go1.26.8"))
	var e serverHttpServerEvent
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = record.Type, 1, 2_000_000
	e.StartNs, e.Goid = 1_000_000, 9
	e.Ids.TraceId[0], e.Ids.SpanId[0] = 1, 2
	e.Status, e.RespWritten = 200, 27
	e.ProtoMajor, e.ProtoMinor = 1, 1
	e.Info = infoResponseKnown | infoLocalAddr
	e.LocalIpLen, e.LocalPort = 4, 8080
	copy(e.LocalIp[:], []byte{127, 0, 0, 1})
	e.MethodLen = eventstest.PutString(e.Method[:], "GET")
	e.PathLen = eventstest.PutString(e.Path[:], "/users/7")
	e.QueryLen = eventstest.PutString(e.Query[:], "page=2")
	e.HostLen = eventstest.PutString(e.Host[:], "localhost:8080")
	e.PatternLen = eventstest.PutString(e.Pattern[:], "GET /users/{id}")
	e.RemoteLen = eventstest.PutString(e.Remote[:], "127.0.0.1:40000")
	buf := eventstest.Raw(&e)
	d := &events.Decoder{Clock: events.FixedClock(0)}
	b.ReportAllocs()
	for b.Loop() {
		ev, err := record.Decode(buf, d)
		if err != nil {
			b.Fatal(err)
		}
		s := c.Handle(ev)
		s.Hold(1)
		s.Release()
	}
}

// A HEAD response sends no body, whatever the handler wrote; a handler
// that panicked sent no response and is an error; a hijacked connection's
// status and body are the handler's business.
func TestDecodeHowRequestsEnd(t *testing.T) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(1, "/x", "svc", "go1.26.8"))
	span := func(method string, info uint8, status uint16, written int64) *model.Span {
		var e serverHttpServerEvent
		e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = record.Type, 1, 2
		e.StartNs = 1
		e.Info = infoResponseKnown | info
		e.Status, e.RespWritten = status, written
		e.MethodLen = eventstest.PutString(e.Method[:], method)
		s := decode(&e, events.FixedClock(0)).Span()
		c.HandleAll(s)
		return s
	}
	head := span("HEAD", 0, 0, 5)
	if a := eventstest.Attrs(head); a["http.response.body.size"] != int64(0) || a["http.response.status_code"] != int64(200) {
		t.Errorf("HEAD: %v, want 200 and no body", a)
	}
	if a := eventstest.Attrs(span("GET", 0, 0, 5)); a["http.response.body.size"] != int64(5) {
		t.Errorf("GET: %v, want a body of 5", a)
	}
	panicked := span("GET", infoPanicked, 0, 0)
	if a := eventstest.Attrs(panicked); panicked.Status != codes.Error || a["error.type"] != "panic" || a["http.response.status_code"] != nil {
		t.Errorf("panicked: status %v attributes %v, want an error of type panic and no status code", panicked.Status, a)
	}
	hijacked := span("GET", infoHijacked, 0, 0)
	if a := eventstest.Attrs(hijacked); hijacked.Status != codes.Unset || a["http.response.status_code"] != nil || a["http.response.body.size"] != nil {
		t.Errorf("hijacked: status %v attributes %v, want neither status code nor body size", hijacked.Status, a)
	}
}

// decode is the decoder on a record of its own, for tests.
func decode(e *serverHttpServerEvent, clock *events.Clock) *Request {
	r := &Request{}
	decodeInto(r, e, clock)
	return r
}
