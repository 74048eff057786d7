package correlate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
)

// The kernel path's cost per record: what a keep-alive connection of a
// program traced from the kernel costs the agent for one exchange (one
// record read, one written). "Tracer" is the parsing and pairing alone;
// "Correlator" adds what every span then gets (process, semconv).

var (
	benchLocal  = netip.MustParseAddrPort("10.0.0.9:8000")
	benchRemote = netip.MustParseAddrPort("10.0.0.7:41000")
)

// benchHTTP is a request read and its response written, as the probe
// reports them.
func benchHTTP() (req, resp *SockData) {
	r := "GET /api/items/42?color=red HTTP/1.1\r\nHost: shop:8000\r\nUser-Agent: python-requests/2.31.0\r\n" +
		"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n" +
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"
	w := "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: application/json\r\n" +
		"Content-Length: 27\r\n\r\n{\"id\":42,\"name\":\"teapot\"}\r\n"
	at := time.Unix(1000, 0)
	req = &SockData{PID: 7, TID: 7, FD: 5, Sock: 99, Time: at, Dir: SockRead, Proto: ProtoHTTP,
		Len: uint32(len(r)), Data: []byte(r), Local: benchLocal, Remote: benchRemote}
	resp = &SockData{PID: 7, TID: 7, FD: 5, Sock: 99, Time: at.Add(time.Millisecond), Dir: SockWrite, Proto: ProtoHTTP,
		Len: uint32(len(w)), Data: []byte(w), Tail: []byte(w[len(w)-8:]), Local: benchLocal, Remote: benchRemote}
	return req, resp
}

// benchPostgres is a simple query written and its answer (three rows) read.
func benchPostgres() (query, answer *SockData) {
	q := prototest.PGQuery("SELECT id, name, price FROM items WHERE owner = 'ann' AND price > 10")
	a := prototest.Cat(prototest.PGRowDesc("id", "name", "price"), prototest.PGDataRow("1", "pot", "12"), prototest.PGDataRow("2", "cup", "15"),
		prototest.PGDataRow("3", "jar", "30"), prototest.PGComplete("SELECT 3"), prototest.PGReady())
	at := time.Unix(1000, 0)
	query = &SockData{PID: 7, TID: 7, FD: 6, Sock: 98, Time: at, Dir: SockWrite, Proto: ProtoPostgres,
		Len: uint32(len(q)), Data: q, Local: benchRemote, Remote: dbServer}
	answer = &SockData{PID: 7, TID: 7, FD: 6, Sock: 98, Time: at.Add(time.Millisecond), Dir: SockRead, Proto: ProtoPostgres,
		Len: uint32(len(a)), Data: a, Ready: true, Local: benchRemote, Remote: dbServer}
	return query, answer
}

// benchPair feeds the two records of one exchange per iteration to handle,
// which must complete exactly one span with the second.
func benchPair(b *testing.B, first, second *SockData, handle func(*SockData) []*model.Span) {
	b.ReportAllocs()
	for b.Loop() {
		if n := len(handle(first)); n != 0 {
			b.Fatalf("%d spans from the first record", n)
		}
		spans := handle(second)
		if n := len(spans); n != 1 {
			b.Fatalf("%d spans from the second record", n)
		}
		// What the sinks do once they exported it (export.Fanout).
		spans[0].Hold(1)
		spans[0].Release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/record")
}

func benchCorrelator() *Correlator {
	c := newTestCorrelator()
	c.Register(model.NewProcess(7, "/usr/bin/python3", "shop", ""))
	return c
}

func BenchmarkKernelHTTPTracer(b *testing.B) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	req, resp := benchHTTP()
	benchPair(b, req, resp, k.handle)
}

func BenchmarkKernelPostgresTracer(b *testing.B) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	q, a := benchPostgres()
	benchPair(b, q, a, k.handle)
}

func BenchmarkKernelHTTPCorrelator(b *testing.B) {
	c := benchCorrelator()
	req, resp := benchHTTP()
	benchPair(b, req, resp, func(d *SockData) []*model.Span { return c.HandleAll(d) })
}

func BenchmarkKernelPostgresCorrelator(b *testing.B) {
	c := benchCorrelator()
	q, a := benchPostgres()
	benchPair(b, q, a, func(d *SockData) []*model.Span { return c.HandleAll(d) })
}

// BenchmarkKernelPostgresTracerAlternating alternates two statements, so
// that no query repeats the one before it (the parser's last-statement
// memory never helps).
func BenchmarkKernelPostgresTracerAlternating(b *testing.B) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	q1, a := benchPostgres()
	q2 := *q1
	q2.Data = prototest.PGQuery("SELECT id, name FROM owners WHERE name = 'ann' AND since > 2020")
	q2.Len = uint32(len(q2.Data))
	queries := [2]*SockData{q1, &q2}
	i := 0
	benchPair(b, nil, a, func(d *SockData) []*model.Span {
		if d == nil {
			i++
			d = queries[i%2]
		}
		return k.handle(d)
	})
}
