package correlate

import (
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func sock(dir SockDir, fd int32, at int, data string) *SockData {
	d := &SockData{PID: 7, FD: fd, Dir: dir, Proto: ProtoHTTP, Time: time.Unix(1000, int64(at)*int64(time.Millisecond)), Data: []byte(data), Len: uint32(len(data))}
	if dir == SockWrite {
		d.Tail = tail(data)
	}
	return d
}

// tail is what the probe keeps of a write's end.
func tail(data string) []byte { return []byte(data[max(0, len(data)-8):]) }

// bodyWrite is a later write of a response's body, as the probe reports
// it: length and tail only.
func bodyWrite(fd int32, at int, data string) *SockData {
	d := sock(SockWriteBody, fd, at, "")
	d.Len, d.Tail = uint32(len(data)), tail(data)
	return d
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

func (k testKernel) handle(d *SockData) *model.Span {
	if spans := conv(k.kernelTracer.handle(d)); len(spans) > 0 {
		return spans[0]
	}
	return nil
}

func attr(s *model.Span, key string) string {
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
	s := k.handle(sock(SockWrite, 4, 5, "HTTP/1.0 404 Not Found\r\nServer: x\r\nContent-Length: 0\r\n\r\n"))
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
	a := k.handle(sock(SockWrite, 5, 1, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
	b := k.handle(sock(SockWrite, 5, 2, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
	if a == nil || b == nil || attr(a, "url.path") != "/a" || attr(b, "url.path") != "/b" {
		t.Fatalf("pipelined pairs: %v %v", a, b)
	}
	if b.Status != codes.Error {
		t.Errorf("500 must be an error")
	}
	// Keep-alive: the next request on the same descriptor.
	k.handle(sock(SockRead, 5, 3, "GET /c HTTP/1.1\r\n\r\n"))
	if c := k.handle(sock(SockWrite, 5, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); c == nil || attr(c, "url.path") != "/c" {
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
	if s := k.handle(sock(SockWrite, 8, 1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); s == nil || attr(s, "url.path") != "/slow" {
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
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), []byte(nil))
	f.Add([]byte("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), []byte("HTTP/1.1 999 X"), []byte("x"))
	f.Add([]byte("GET "+strings.Repeat("a", 600)), []byte("HTTP/1.0 1"), []byte(nil))
	f.Add([]byte("PUT /t HTTP/1.1\r\ntraceparent: 00-zz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"), []byte("HTTP/1.1 204 \r\n"), []byte(nil))
	f.Add([]byte("GET /s HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), []byte("3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("GET /l HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: -5\r\nContent-Length: 9223372036854775807\r\n\r\n"), []byte("abc"))
	f.Fuzz(func(t *testing.T, req, resp, body []byte) {
		stats := &Stats{}
		k := newTestKernel(stats)
		if len(req) > 512 {
			req = req[:512] // what the probe captures
		}
		k.handle(&SockData{PID: 1, FD: 3, Dir: SockRead, Proto: ProtoHTTP, Data: req})
		var spans []*model.Span
		for _, d := range []*SockData{
			{PID: 1, FD: 3, Dir: SockWrite, Proto: ProtoHTTP, Data: resp, Len: uint32(len(resp)), Tail: tail(string(resp))},
			{PID: 1, FD: 3, Dir: SockWriteBody, Proto: ProtoHTTP, Len: uint32(len(body)), Tail: tail(string(body))},
			{PID: 1, FD: 3, Dir: SockClose},
		} {
			spans = append(spans, conv(k.kernelTracer.handle(d))...)
		}
		if len(spans) > 1 {
			t.Fatalf("%d spans for one request", len(spans))
		}
		for _, s := range spans {
			code := attr(s, "http.response.status_code")
			if len(code) != 3 || s.Name == "" {
				t.Fatalf("span with status %q name %q", code, s.Name)
			}
		}
		if len(k.streams) != 0 || len(k.serving) != 0 {
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
	s := k.handle(sock(SockWrite, 12, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
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

// TestKernelHTTPResponseEnds: a server span ends where its response ends,
// however the body is framed and however many writes it takes (a streamed
// answer lasts until its last chunk), and the thread serves the request
// until then.
func TestKernelHTTPResponseEnds(t *testing.T) {
	k := newTestKernel(&Stats{})
	dur := func(s *model.Span) time.Duration { return s.End.Sub(s.Start) }

	// Content-Length, body in two later writes.
	k.handle(sock(SockRead, 20, 0, "GET /len HTTP/1.1\r\n\r\n"))
	if s := k.handle(sock(SockWrite, 20, 1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")); s != nil {
		t.Fatalf("span before the body was written: %v", s)
	}
	if s := k.handle(bodyWrite(20, 2, "0123")); s != nil {
		t.Fatalf("span before the whole body was written: %v", s)
	}
	if s := k.handle(bodyWrite(20, 3, "456789")); s == nil || dur(s) != 3*time.Millisecond {
		t.Fatalf("content-length body: %v", s)
	}

	// Chunked, streamed: a call made while streaming is the request's child.
	k.handle(sock(SockRead, 21, 0, "POST /v1/chat HTTP/1.1\r\n\r\n"))
	k.handle(sock(SockWrite, 21, 1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
	k.handle(bodyWrite(21, 100, "5\r\nworld\r\n"))
	k.handle(sock(SockWrite, 22, 150, "GET /tool HTTP/1.1\r\n\r\n"))
	call := k.handle(sock(SockRead, 22, 160, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	if s := k.handle(bodyWrite(21, 200, "1\r\n!\r\n")); s != nil {
		t.Fatalf("span before the last chunk: %v", s)
	}
	s := k.handle(bodyWrite(21, 300, "0\r\n\r\n"))
	if s == nil || dur(s) != 300*time.Millisecond {
		t.Fatalf("chunked stream: %v", s)
	}
	if call == nil || call.ParentSpanID != s.SpanID || call.TraceID != s.TraceID {
		t.Errorf("call made while streaming: %v, want a child of %v", call, s)
	}
	// The last chunk and the end together, in the head's write.
	k.handle(sock(SockRead, 21, 400, "GET /one HTTP/1.1\r\n\r\n"))
	if s := k.handle(sock(SockWrite, 21, 401, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")); s == nil || dur(s) != time.Millisecond {
		t.Fatalf("chunked in one write: %v", s)
	}

	// Framed by the close (HTTP/1.0, no length): ends with its last write.
	k.handle(sock(SockRead, 23, 0, "GET /old HTTP/1.0\r\n\r\n"))
	k.handle(sock(SockWrite, 23, 1, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"))
	k.handle(bodyWrite(23, 50, "data"))
	spans := conv(k.kernelTracer.handle(sock(SockClose, 23, 90, "")))
	if len(spans) != 1 || dur(spans[0]) != 50*time.Millisecond {
		t.Fatalf("close-delimited: %v", spans)
	}
	// Or with the next request, on a connection that stays open.
	k.handle(sock(SockRead, 24, 0, "GET /a HTTP/1.1\r\n\r\n"))
	k.handle(sock(SockWrite, 24, 1, "HTTP/1.1 200 OK\r\n\r\n"))
	k.handle(bodyWrite(24, 5, "xyz"))
	if s := k.handle(sock(SockRead, 24, 9, "GET /b HTTP/1.1\r\n\r\n")); s == nil || attr(s, "url.path") != "/a" || dur(s) != 5*time.Millisecond {
		t.Fatalf("ended by the next request: %v", s)
	}
	// Or with the process: it exited without closing.
	if spans := conv(k.forget(7)); len(spans) != 0 {
		t.Fatalf("forget ended responses not yet begun: %v", spans)
	}
	k.handle(sock(SockRead, 25, 0, "GET /c HTTP/1.0\r\n\r\n"))
	k.handle(sock(SockWrite, 25, 1, "HTTP/1.0 200 OK\r\n\r\n"))
	if spans := conv(k.forget(7)); len(spans) != 1 || attr(spans[0], "url.path") != "/c" {
		t.Fatalf("at exit: %v", spans)
	}

	// No body whatever the fields say: HEAD, 204, 304. An interim 100
	// Continue is not the answer. A write whose end the probe did not see
	// ends the response.
	k.handle(sock(SockRead, 26, 0, "HEAD /h HTTP/1.1\r\n\r\n"))
	if s := k.handle(sock(SockWrite, 26, 1, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")); s == nil {
		t.Fatal("HEAD response waits for a body")
	}
	k.handle(sock(SockRead, 26, 2, "PUT /p HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"))
	if s := k.handle(sock(SockWrite, 26, 3, "HTTP/1.1 100 Continue\r\n\r\n")); s != nil {
		t.Fatalf("interim response ended the request: %v", s)
	}
	if s := k.handle(sock(SockWrite, 26, 4, "HTTP/1.1 204 No Content\r\n\r\n")); s == nil || attr(s, "http.response.status_code") != "204" {
		t.Fatalf("final response after 100 Continue: %v", s)
	}
	k.handle(sock(SockRead, 26, 5, "GET /v HTTP/1.1\r\n\r\n"))
	k.handle(sock(SockWrite, 26, 6, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	partial := bodyWrite(26, 7, "")
	partial.Partial = true
	if s := k.handle(partial); s == nil || dur(s) != 2*time.Millisecond {
		t.Fatalf("partial write: %v", s)
	}
	if len(k.serving) != 0 {
		t.Errorf("threads still serving: %v", k.serving)
	}

	// Still streaming when the agent detaches: the span ends with the
	// last write seen.
	k.handle(sock(SockRead, 27, 0, "GET /long HTTP/1.1\r\n\r\n"))
	k.handle(sock(SockWrite, 27, 1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	k.handle(bodyWrite(27, 40, "5\r\nhello\r\n"))
	var flushed []*model.Span
	k.flush(func(pid uint32, s *model.Span) {
		if pid != 7 {
			t.Errorf("flushed span of pid %d", pid)
		}
		flushed = append(flushed, conv([]*model.Span{s})...)
	})
	if len(flushed) != 1 || dur(flushed[0]) != 40*time.Millisecond {
		t.Fatalf("flush at detach: %v", flushed)
	}
}

// conv derives the spans' names and attributes as the correlator does.
func conv(spans []*model.Span) []*model.Span {
	for _, s := range spans {
		semconv.Apply(s, nil)
	}
	return spans
}
