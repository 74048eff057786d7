package correlate

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func sock(dir SockDir, fd int32, at int, data string) *SockData {
	return &SockData{PID: 7, FD: fd, Dir: dir, Proto: ProtoHTTP, Time: time.Unix(1000, int64(at)*int64(time.Millisecond)), Data: []byte(data), Len: uint32(len(data))}
}

// seqIDs hands out IDs in sequence, so that tests can tell spans apart.
type seqIDs struct{ n uint64 }

func (s *seqIDs) newTraceID() trace.TraceID {
	s.n++
	return trace.TraceID{0: 0xaa, 15: byte(s.n)}
}

func (s *seqIDs) newSpanID() trace.SpanID {
	s.n++
	return trace.SpanID{0: 0xbb, 7: byte(s.n)}
}

// testKernel is a kernelTracer whose handle returns the first span only,
// for tests of exchanges that complete one at a time.
type testKernel struct{ *kernelTracer }

func newTestKernel(stats *Stats) testKernel {
	return testKernel{newKernelTracer(stats, &seqIDs{})}
}

func (k testKernel) handle(d *SockData) *Span {
	if spans := k.kernelTracer.handle(d); len(spans) > 0 {
		return spans[0]
	}
	return nil
}

func attr(s *Span, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestKernelHTTPServerSpan(t *testing.T) {
	k := newTestKernel(&Stats{})
	req := "GET /items/7?color=red HTTP/1.1\r\nHost: backend:8000\r\n" +
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: a=b\r\n\r\n"
	if s := k.handle(sock(SockRead, 4, 0, req)); s != nil {
		t.Fatalf("a request alone made a span: %+v", s)
	}
	s := k.handle(sock(SockWrite, 4, 5, "HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n"))
	if s == nil {
		t.Fatal("no span for the response")
	}
	if s.Kind != trace.SpanKindServer || s.Name != "GET" || s.End.Sub(s.Start) != 5*time.Millisecond {
		t.Errorf("span %q kind %v duration %v", s.Name, s.Kind, s.End.Sub(s.Start))
	}
	for k, want := range map[string]string{
		"url.path": "/items/7", "url.query": "color=red", "http.response.status_code": "404",
		"server.address": "backend", "server.port": "8000", "network.protocol.version": "1.1",
	} {
		if got := attr(s, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if s.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" || s.ParentSpanID.String() != "b7ad6b7169203331" || s.TraceState != "a=b" {
		t.Errorf("trace %s parent %s state %q", s.TraceID, s.ParentSpanID, s.TraceState)
	}
	if s.Status != codes.Unset {
		t.Errorf("404 on a server span is not an error, got %v", s.Status)
	}
}

func TestKernelHTTPPipelinedAndKeepAlive(t *testing.T) {
	k := newTestKernel(&Stats{})
	// Two pipelined requests in one read, the first with a body.
	k.handle(sock(SockRead, 5, 0, "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /b HTTP/1.1\r\n\r\n"))
	a := k.handle(sock(SockWrite, 5, 1, "HTTP/1.1 201 Created\r\n\r\n"))
	b := k.handle(sock(SockWrite, 5, 2, "HTTP/1.1 500 Oops\r\n\r\n"))
	if a == nil || b == nil || attr(a, "url.path") != "/a" || attr(b, "url.path") != "/b" {
		t.Fatalf("pipelined pairs: %v %v", a, b)
	}
	if b.Status != codes.Error {
		t.Errorf("500 must be an error")
	}
	// Keep-alive: the next request on the same descriptor.
	k.handle(sock(SockRead, 5, 3, "GET /c HTTP/1.1\r\n\r\n"))
	if c := k.handle(sock(SockWrite, 5, 4, "HTTP/1.1 200 OK\r\n\r\n")); c == nil || attr(c, "url.path") != "/c" {
		t.Fatalf("keep-alive request: %v", c)
	}
}

func TestKernelHTTPClientSpan(t *testing.T) {
	k := newTestKernel(&Stats{})
	k.handle(sock(SockWrite, 6, 0, "GET /v1/models HTTP/1.1\r\nHost: api.example:443\r\n\r\n"))
	s := k.handle(sock(SockRead, 6, 9, "HTTP/1.1 503 Busy\r\n\r\n"))
	if s == nil || s.Kind != trace.SpanKindClient || attr(s, "url.full") != "http://api.example:443/v1/models" || s.Status != codes.Error {
		t.Fatalf("client span %+v", s)
	}
}

func TestKernelHTTPPartialAndHostile(t *testing.T) {
	stats := &Stats{}
	k := newTestKernel(stats)
	// A request line cut by a slow sender: still answered, still a span.
	k.handle(sock(SockRead, 8, 0, "GET /slow"))
	if s := k.handle(sock(SockWrite, 8, 1, "HTTP/1.1 200 OK\r\n\r\n")); s == nil || attr(s, "url.path") != "/slow" {
		t.Fatalf("partial request line: %v", s)
	}
	// Garbage that starts like a method, and a bad status line: no span, counted.
	k.handle(sock(SockRead, 9, 0, "GET\x00\x01garbage\r\n\r\n"))
	if s := k.handle(sock(SockWrite, 9, 1, "HTTP/1.1 2x0 ?\r\n\r\n")); s != nil {
		t.Fatalf("bogus span %v", s)
	}
	if stats.KernelMalformed.Load() != 2 {
		t.Errorf("malformed = %d, want 2", stats.KernelMalformed.Load())
	}
	// A response with no request (attached mid-request): nothing.
	if s := k.handle(sock(SockWrite, 10, 0, "HTTP/1.1 200 OK\r\n\r\n")); s != nil {
		t.Fatalf("span without request %v", s)
	}
	// Unanswered requests are counted on close, and never grow unbounded.
	for i := range maxPending + 10 {
		k.handle(sock(SockRead, 11, i, "GET /x HTTP/1.1\r\n\r\n"))
	}
	k.handle(sock(SockClose, 11, 0, ""))
	if got := stats.KernelUnanswered.Load(); got != maxPending+10 {
		t.Errorf("unanswered = %d, want %d", got, maxPending+10)
	}
}

func FuzzKernelHTTP(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), []byte("HTTP/1.1 999 X"))
	f.Add([]byte("GET "+strings.Repeat("a", 600)), []byte("HTTP/1.0 1"))
	f.Add([]byte("PUT /t HTTP/1.1\r\ntraceparent: 00-zz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"), []byte("HTTP/1.1 204 \r\n"))
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		stats := &Stats{}
		k := newTestKernel(stats)
		if len(req) > 512 {
			req = req[:512] // what the probe captures
		}
		k.handle(&SockData{PID: 1, FD: 3, Dir: SockRead, Proto: ProtoHTTP, Data: req})
		s := k.handle(&SockData{PID: 1, FD: 3, Dir: SockWrite, Proto: ProtoHTTP, Data: resp})
		if s != nil {
			code := attr(s, "http.response.status_code")
			if len(code) != 3 || s.Name == "" {
				t.Fatalf("span with status %q name %q", code, s.Name)
			}
		}
		k.handle(&SockData{PID: 1, FD: 3, Dir: SockClose})
		if len(k.streams) != 0 {
			t.Fatalf("state left after close")
		}
	})
}

func TestKernelHTTPHeadInPieces(t *testing.T) {
	k := newTestKernel(&Stats{})
	k.handle(sock(SockRead, 12, 0, "GET /a HTTP/1.1\r\nHost: x\r\ntracep"))
	k.handle(sock(SockReadMore, 12, 1, "arent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"))
	// A body read after a complete head changes nothing.
	k.handle(sock(SockReadMore, 12, 2, "traceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\n\r\n"))
	s := k.handle(sock(SockWrite, 12, 3, "HTTP/1.1 200 OK\r\n\r\n"))
	if s == nil || s.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" || s.ParentSpanID.String() != "b7ad6b7169203331" {
		t.Fatalf("head in pieces: %+v", s)
	}
}

// TestKernelStreamsBounded: past maxStreams sockets followed at once, a new
// socket's records are dropped and counted, and the table does not grow.
func TestKernelStreamsBounded(t *testing.T) {
	stats := &Stats{}
	k := newTestKernel(stats)
	for fd := range int32(maxStreams + 10) {
		k.handle(sock(SockRead, fd, 0, "GET / HTTP/1.1\r\n\r\n"))
	}
	if len(k.streams) != maxStreams || stats.KernelStreamsFull.Load() != 10 {
		t.Fatalf("%d streams, %d dropped", len(k.streams), stats.KernelStreamsFull.Load())
	}
}
