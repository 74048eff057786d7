package http1

import (
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// closeConn marks a record that closes its connection.
const closeConn protocols.Dir = 0xff

// rec is a segment of one connection of the test's process, or its close.
type rec struct {
	fd int32
	protocols.Segment
}

func sock(dir protocols.Dir, fd int32, at int, data string) *rec {
	d := &rec{fd: fd, Segment: protocols.Segment{Dir: dir, Time: time.Unix(1000, int64(at)*int64(time.Millisecond)), Data: []byte(data), Len: uint32(len(data))}}
	if dir == protocols.Write {
		d.Tail = tail(data)
	}
	return d
}

// tail is what the probe keeps of a write's end.
func tail(data string) []byte { return []byte(data[max(0, len(data)-8):]) }

// bodyWrite is a later write of a response's body, as the probe reports
// it: length and tail only.
func bodyWrite(fd int32, at int, data string) *rec {
	d := sock(protocols.WriteBody, fd, at, "")
	d.Len, d.Tail = uint32(len(data)), tail(data)
	return d
}

// testConns is one process's connections, each with its own parser, fed
// as the correlator feeds them.
type testConns struct {
	proc  *prototest.Process
	conns map[int32]*prototest.Wire
	clock int
}

func newTestConns() *testConns {
	return &testConns{proc: prototest.NewProcess(), conns: map[int32]*prototest.Wire{}}
}

// handleAll feeds d to its connection's parser (made at its first
// segment), and returns the spans it completed.
func (k *testConns) handleAll(d *rec) []*model.Span {
	w := k.conns[d.fd]
	if d.Dir == closeConn {
		if w == nil {
			return nil
		}
		delete(k.conns, d.fd)
		return w.Close()
	}
	if w == nil {
		w = prototest.NewWire(k.proc, New, &k.clock)
		k.conns[d.fd] = w
	}
	return w.Send(&d.Segment)
}

// handle returns the first span d completes, for tests of exchanges that
// complete one at a time.
func (k *testConns) handle(d *rec) *model.Span {
	if spans := k.handleAll(d); len(spans) > 0 {
		return spans[0]
	}
	return nil
}

// exit is what the correlator does at the process's exit: every
// connection flushed and forgotten, what it awaited unanswered.
func (k *testConns) exit() []*model.Span {
	var spans []*model.Span
	for fd, w := range k.conns {
		spans = append(spans, prototest.Convert(w.Parser.Flush(nil))...)
		k.proc.Unanswered += w.Parser.Pending()
		delete(k.conns, fd)
	}
	clear(k.proc.Serving)
	return spans
}

// flush is what the correlator does when it stops: every response still
// being written ends.
func (k *testConns) flush() []*model.Span {
	var spans []*model.Span
	for _, w := range k.conns {
		spans = append(spans, prototest.Convert(w.Parser.Flush(nil))...)
	}
	return spans
}

var attr = prototest.Attr

func TestServerSpan(t *testing.T) {
	k := newTestConns()
	req := "GET /items/7?color=red HTTP/1.1\r\nHost: backend:8000\r\n" +
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: a=b\r\n\r\n"
	if s := k.handle(sock(protocols.Read, 4, 0, req)); s != nil {
		t.Fatalf("a request alone made a span: %+v", s)
	}
	s := k.handle(sock(protocols.Write, 4, 5, "HTTP/1.0 404 Not Found\r\nServer: x\r\nContent-Length: 0\r\n\r\n"))
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

func TestPipelinedAndKeepAlive(t *testing.T) {
	k := newTestConns()
	// Two pipelined requests in one read, the first with a body.
	k.handle(sock(protocols.Read, 5, 0, "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /b HTTP/1.1\r\n\r\n"))
	a := k.handle(sock(protocols.Write, 5, 1, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
	b := k.handle(sock(protocols.Write, 5, 2, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
	if a == nil || b == nil || attr(a, "url.path") != "/a" || attr(b, "url.path") != "/b" {
		t.Fatalf("pipelined pairs: %v %v", a, b)
	}
	if b.Status != codes.Error {
		t.Errorf("500 must be an error")
	}
	// Keep-alive: the next request on the same descriptor.
	k.handle(sock(protocols.Read, 5, 3, "GET /c HTTP/1.1\r\n\r\n"))
	if c := k.handle(sock(protocols.Write, 5, 4, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); c == nil || attr(c, "url.path") != "/c" {
		t.Fatalf("keep-alive request: %v", c)
	}
}

func TestClientSpan(t *testing.T) {
	k := newTestConns()
	k.handle(sock(protocols.Write, 6, 0, "GET /v1/models HTTP/1.1\r\nHost: api.example:443\r\n\r\n"))
	s := k.handle(sock(protocols.Read, 6, 9, "HTTP/1.1 503 Busy\r\n\r\n"))
	if s == nil || s.Kind != trace.SpanKindClient || attr(s, "url.full") != "http://api.example:443/v1/models" || s.Status != codes.Error {
		t.Fatalf("client span %+v", s)
	}
}

func TestPartialAndHostile(t *testing.T) {
	k := newTestConns()
	// A request line cut by a slow sender: still answered, still a span.
	k.handle(sock(protocols.Read, 8, 0, "GET /slow"))
	if s := k.handle(sock(protocols.Write, 8, 1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); s == nil || attr(s, "url.path") != "/slow" {
		t.Fatalf("partial request line: %v", s)
	}
	// Garbage that starts like a method, and a bad status line: no span, counted.
	k.handle(sock(protocols.Read, 9, 0, "GET\x00\x01garbage\r\n\r\n"))
	if s := k.handle(sock(protocols.Write, 9, 1, "HTTP/1.1 2x0 ?\r\n\r\n")); s != nil {
		t.Fatalf("bogus span %v", s)
	}
	if k.proc.Malformed != 2 {
		t.Errorf("malformed = %d, want 2", k.proc.Malformed)
	}
	// A response with no request (attached mid-request): nothing.
	if s := k.handle(sock(protocols.Write, 10, 0, "HTTP/1.1 200 OK\r\n\r\n")); s != nil {
		t.Fatalf("span without request %v", s)
	}
	// Unanswered requests are counted on close, and never grow unbounded.
	for i := range prototest.MaxPending + 10 {
		k.handle(sock(protocols.Read, 11, i, "GET /x HTTP/1.1\r\n\r\n"))
	}
	if n := k.conns[11].Parser.Pending(); n != prototest.MaxPending {
		t.Errorf("%d requests held, want %d", n, prototest.MaxPending)
	}
	k.handle(sock(closeConn, 11, 0, ""))
	if got := k.proc.Unanswered; got != prototest.MaxPending+10 {
		t.Errorf("unanswered = %d, want %d", got, prototest.MaxPending+10)
	}
	if len(k.proc.Serving) != 0 {
		t.Errorf("threads still serving: %v", k.proc.Serving)
	}
}

// FuzzHTTP1 feeds a request read, a response head written, a later body
// write and the close: at most one span, well formed, and nothing left
// behind.
func FuzzHTTP1(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), []byte(nil))
	f.Add([]byte("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), []byte("HTTP/1.1 999 X"), []byte("x"))
	f.Add([]byte("GET "+strings.Repeat("a", 600)), []byte("HTTP/1.0 1"), []byte(nil))
	f.Add([]byte("PUT /t HTTP/1.1\r\ntraceparent: 00-zz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"), []byte("HTTP/1.1 204 \r\n"), []byte(nil))
	f.Add([]byte("GET /s HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), []byte("3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("GET /l HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: -5\r\nContent-Length: 9223372036854775807\r\n\r\n"), []byte("abc"))
	f.Add([]byte("GET /a HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracest"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"), []byte("abc"))
	f.Fuzz(func(t *testing.T, req, resp, body []byte) {
		k := newTestConns()
		if len(req) > 512 {
			req = req[:512] // what the probe captures
		}
		k.handle(&rec{fd: 3, Segment: protocols.Segment{Dir: protocols.Read, Data: req}})
		var spans []*model.Span
		for _, d := range []*rec{
			{fd: 3, Segment: protocols.Segment{Dir: protocols.ReadMore, Data: req}},
			{fd: 3, Segment: protocols.Segment{Dir: protocols.Write, Data: resp, Len: uint32(len(resp)), Tail: tail(string(resp))}},
			{fd: 3, Segment: protocols.Segment{Dir: protocols.WriteBody, Len: uint32(len(body)), Tail: tail(string(body))}},
			{fd: 3, Segment: protocols.Segment{Dir: closeConn}},
		} {
			spans = append(spans, k.handleAll(d)...)
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
		if len(k.conns) != 0 || len(k.proc.Serving) != 0 {
			t.Fatalf("state left after close")
		}
	})
}

func TestHeadInPieces(t *testing.T) {
	k := newTestConns()
	k.handle(sock(protocols.Read, 12, 0, "GET /a HTTP/1.1\r\nHost: x\r\ntracep"))
	k.handle(sock(protocols.ReadMore, 12, 1, "arent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"))
	// A body read after a complete head changes nothing.
	k.handle(sock(protocols.ReadMore, 12, 2, "traceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\n\r\n"))
	s := k.handle(sock(protocols.Write, 12, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	if s == nil || s.TraceID.String() != "0af7651916cd43dd8448eb211c80319c" || s.ParentSpanID.String() != "b7ad6b7169203331" {
		t.Fatalf("head in pieces: %+v", s)
	}
}

// TestResponseEnds: a server span ends where its response ends,
// however the body is framed and however many writes it takes (a streamed
// answer lasts until its last chunk), and the thread serves the request
// until then.
func TestResponseEnds(t *testing.T) {
	k := newTestConns()
	dur := func(s *model.Span) time.Duration { return s.End.Sub(s.Start) }

	// Content-Length, body in two later writes.
	k.handle(sock(protocols.Read, 20, 0, "GET /len HTTP/1.1\r\n\r\n"))
	if s := k.handle(sock(protocols.Write, 20, 1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")); s != nil {
		t.Fatalf("span before the body was written: %v", s)
	}
	if s := k.handle(bodyWrite(20, 2, "0123")); s != nil {
		t.Fatalf("span before the whole body was written: %v", s)
	}
	if s := k.handle(bodyWrite(20, 3, "456789")); s == nil || dur(s) != 3*time.Millisecond {
		t.Fatalf("content-length body: %v", s)
	}

	// Chunked, streamed: a call made while streaming is the request's child.
	k.handle(sock(protocols.Read, 21, 0, "POST /v1/chat HTTP/1.1\r\n\r\n"))
	k.handle(sock(protocols.Write, 21, 1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
	k.handle(bodyWrite(21, 100, "5\r\nworld\r\n"))
	k.handle(sock(protocols.Write, 22, 150, "GET /tool HTTP/1.1\r\n\r\n"))
	call := k.handle(sock(protocols.Read, 22, 160, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
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
	k.handle(sock(protocols.Read, 21, 400, "GET /one HTTP/1.1\r\n\r\n"))
	if s := k.handle(sock(protocols.Write, 21, 401, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")); s == nil || dur(s) != time.Millisecond {
		t.Fatalf("chunked in one write: %v", s)
	}

	// Framed by the close (HTTP/1.0, no length): ends with its last write.
	k.handle(sock(protocols.Read, 23, 0, "GET /old HTTP/1.0\r\n\r\n"))
	k.handle(sock(protocols.Write, 23, 1, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"))
	k.handle(bodyWrite(23, 50, "data"))
	spans := k.handleAll(sock(closeConn, 23, 90, ""))
	if len(spans) != 1 || dur(spans[0]) != 50*time.Millisecond {
		t.Fatalf("close-delimited: %v", spans)
	}
	// Or with the next request, on a connection that stays open.
	k.handle(sock(protocols.Read, 24, 0, "GET /a HTTP/1.1\r\n\r\n"))
	k.handle(sock(protocols.Write, 24, 1, "HTTP/1.1 200 OK\r\n\r\n"))
	k.handle(bodyWrite(24, 5, "xyz"))
	if s := k.handle(sock(protocols.Read, 24, 9, "GET /b HTTP/1.1\r\n\r\n")); s == nil || attr(s, "url.path") != "/a" || dur(s) != 5*time.Millisecond {
		t.Fatalf("ended by the next request: %v", s)
	}
	// Or with the process: it exited without closing.
	if spans := k.exit(); len(spans) != 0 {
		t.Fatalf("forget ended responses not yet begun: %v", spans)
	}
	k.handle(sock(protocols.Read, 25, 0, "GET /c HTTP/1.0\r\n\r\n"))
	k.handle(sock(protocols.Write, 25, 1, "HTTP/1.0 200 OK\r\n\r\n"))
	if spans := k.exit(); len(spans) != 1 || attr(spans[0], "url.path") != "/c" {
		t.Fatalf("at exit: %v", spans)
	}

	// No body whatever the fields say: HEAD, 204, 304. An interim 100
	// Continue is not the answer. A write whose end the probe did not see
	// ends the response.
	k.handle(sock(protocols.Read, 26, 0, "HEAD /h HTTP/1.1\r\n\r\n"))
	if s := k.handle(sock(protocols.Write, 26, 1, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")); s == nil {
		t.Fatal("HEAD response waits for a body")
	}
	k.handle(sock(protocols.Read, 26, 2, "PUT /p HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"))
	if s := k.handle(sock(protocols.Write, 26, 3, "HTTP/1.1 100 Continue\r\n\r\n")); s != nil {
		t.Fatalf("interim response ended the request: %v", s)
	}
	if s := k.handle(sock(protocols.Write, 26, 4, "HTTP/1.1 204 No Content\r\n\r\n")); s == nil || attr(s, "http.response.status_code") != "204" {
		t.Fatalf("final response after 100 Continue: %v", s)
	}
	k.handle(sock(protocols.Read, 26, 5, "GET /v HTTP/1.1\r\n\r\n"))
	k.handle(sock(protocols.Write, 26, 6, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	partial := bodyWrite(26, 7, "")
	partial.Partial = true
	if s := k.handle(partial); s == nil || dur(s) != 2*time.Millisecond {
		t.Fatalf("partial write: %v", s)
	}
	if len(k.proc.Serving) != 0 {
		t.Errorf("threads still serving: %v", k.proc.Serving)
	}

	// Still streaming when the agent detaches: the span ends with the
	// last write seen.
	k.handle(sock(protocols.Read, 27, 0, "GET /long HTTP/1.1\r\n\r\n"))
	k.handle(sock(protocols.Write, 27, 1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	k.handle(bodyWrite(27, 40, "5\r\nhello\r\n"))
	flushed := k.flush()
	if len(flushed) != 1 || dur(flushed[0]) != 40*time.Millisecond {
		t.Fatalf("flush at detach: %v", flushed)
	}
}
