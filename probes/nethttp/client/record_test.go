package client

import (
	"net/netip"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/events/eventstest"
)

// TestSpansAreRedacted: what leaves the correlator has been through the
// default redactor, each attribute read by its kind.
func TestSpansAreRedacted(t *testing.T) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(10, "/bin/app", "", "go1.26.8"))
	start := time.Unix(100, 0)
	cli := c.Handle((&RoundTrip{
		PID: 10, Start: start, End: start.Add(time.Millisecond),
		Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/v1/chat",
		RawQuery: "access_token=sk-proj-abcdefghijklmnopqrstuvwx&model=small", HasResponse: true, Status: 200,
	}).Span())
	got := map[string]any{}
	for k, v := range eventstest.Attrs(cli) {
		got["client "+k] = v
	}
	for k, want := range map[string]string{
		"client url.full": "https://api.example.com/v1/chat?access_token=REDACTED&model=small",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
}

// The record's fields land in the round trip, its error type named through
// the decoder's namer, and a status no server could send is dropped.
func TestDecodeHTTPClient(t *testing.T) {
	var e clientHttpClientEvent
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = record.Type, 7, 3_000
	e.StartNs, e.Goid = 1_000, 42
	e.ContentLength = 5
	e.Status = 502
	e.ErrType = 0xabc
	e.Info = infoResponse | infoError | infoPeerAddr
	e.PeerIpLen, e.PeerPort = 4, 8080
	copy(e.PeerIp[:], []byte{10, 0, 0, 9})
	e.MethodLen = eventstest.PutString(e.Method[:], "POST")
	e.SchemeLen = eventstest.PutString(e.Scheme[:], "http")
	e.HostLen = eventstest.PutString(e.Host[:], "orders:8080")
	e.PathLen = eventstest.PutString(e.Path[:], "/v1/orders")
	e.QueryLen = eventstest.PutString(e.Query[:], "x=1")
	d := &events.Decoder{Clock: events.FixedClock(0), Namer: func(pid uint32, itab uint64) string {
		if pid == 7 && itab == 0xabc {
			return "*net.OpError"
		}
		return ""
	}}
	raw := eventstest.Raw(&e)
	if _, err := record.Decode(raw, d); err != nil {
		t.Fatal(err)
	}
	got := *decode(&e, d)
	want := RoundTrip{
		PID: 7, GoroutineID: 42, Start: time.Unix(0, 1_000), End: time.Unix(0, 3_000),
		Method: "POST", Scheme: "http", Host: "orders:8080", Path: "/v1/orders", RawQuery: "x=1",
		ContentLength: 5, Peer: netip.MustParseAddrPort("10.0.0.9:8080"),
		HasResponse: true, Status: 502, Err: true, ErrType: "*net.OpError",
	}
	if got != want {
		t.Errorf("decoded\n %+v\nwant\n %+v", got, want)
	}
	e.Status = 42
	if r := decode(&e, d); r.HasResponse || r.Status != 0 {
		t.Errorf("status 42 reported: %+v", r)
	}
}

// BenchmarkHTTPClientRecord takes one record from the ring buffer's bytes
// through the decoder and the correlator to the sinks' release (what
// export.Fanout does once every sink exported it).
func BenchmarkHTTPClientRecord(b *testing.B) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(7, "/x", "", "go1.26.8"))
	var e clientHttpClientEvent
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = record.Type, 7, 3_000
	e.StartNs, e.Goid = 1_000, 42
	e.Ids.TraceId[0], e.Ids.SpanId[0], e.Ids.ParentId[0] = 1, 2, 3
	e.Status = 200
	e.Info = infoResponse | infoPeerAddr
	e.PeerIpLen, e.PeerPort = 4, 8080
	copy(e.PeerIp[:], []byte{10, 0, 0, 9})
	e.MethodLen = eventstest.PutString(e.Method[:], "GET")
	e.SchemeLen = eventstest.PutString(e.Scheme[:], "http")
	e.HostLen = eventstest.PutString(e.Host[:], "orders:8080")
	e.PathLen = eventstest.PutString(e.Path[:], "/v1/orders/7")
	e.QueryLen = eventstest.PutString(e.Query[:], "x=1")
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

// decode is the decoder on a record of its own, for tests.
func decode(e *clientHttpClientEvent, d *events.Decoder) *RoundTrip {
	r := &RoundTrip{}
	decodeInto(r, e, d)
	return r
}
