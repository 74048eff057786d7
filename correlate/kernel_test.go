package correlate

import (
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
	"github.com/zerotrace/zerotrace/correlate/semconv"
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

var attr = prototest.Attr

// The tests here are of what the kernel path joins: the descriptors and
// their bounds, the threads' requests, the process's exit and the agent's
// stop. What each protocol's parser makes of the bytes is tested beside it,
// under protocols/.

// TestKernelHTTPUnansweredBounded: unanswered requests are counted on
// close, and never grow unbounded.
func TestKernelHTTPUnansweredBounded(t *testing.T) {
	stats := &Stats{}
	k := newTestKernel(stats)
	for i := range maxPending + 10 {
		k.handle(sock(SockRead, 11, i, "GET /x HTTP/1.1\r\n\r\n"))
	}
	if n := k.streams[sockKey{pid: 7, fd: 11}].pending(); n != maxPending {
		t.Errorf("%d requests held, want %d", n, maxPending)
	}
	k.handle(sock(SockClose, 11, 0, ""))
	if got := stats.KernelUnanswered.Load(); got != maxPending+10 {
		t.Errorf("unanswered = %d, want %d", got, maxPending+10)
	}
	if len(k.streams) != 0 || len(k.serving) != 0 {
		t.Errorf("state left after close: %d streams, %d threads serving", len(k.streams), len(k.serving))
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

// TestKernelResponseEndsWithProcess: a response being written ends with
// its process's exit, or with the agent's stop, at its last write.
func TestKernelResponseEndsWithProcess(t *testing.T) {
	k := newTestKernel(&Stats{})
	dur := func(s *model.Span) time.Duration { return s.End.Sub(s.Start) }
	// A response that ended with the next request, and one not yet begun.
	k.handle(sock(SockRead, 24, 0, "GET /a HTTP/1.1\r\n\r\n"))
	k.handle(sock(SockWrite, 24, 1, "HTTP/1.1 200 OK\r\n\r\n"))
	k.handle(bodyWrite(24, 5, "xyz"))
	if s := k.handle(sock(SockRead, 24, 9, "GET /b HTTP/1.1\r\n\r\n")); s == nil || attr(s, "url.path") != "/a" || dur(s) != 5*time.Millisecond {
		t.Fatalf("ended by the next request: %v", s)
	}
	// The process exited without closing.
	if spans := conv(k.forget(7)); len(spans) != 0 {
		t.Fatalf("forget ended responses not yet begun: %v", spans)
	}
	k.handle(sock(SockRead, 25, 0, "GET /c HTTP/1.0\r\n\r\n"))
	k.handle(sock(SockWrite, 25, 1, "HTTP/1.0 200 OK\r\n\r\n"))
	if spans := conv(k.forget(7)); len(spans) != 1 || attr(spans[0], "url.path") != "/c" {
		t.Fatalf("at exit: %v", spans)
	}
	if len(k.streams) != 0 || len(k.serving) != 0 {
		t.Errorf("state left after exit: %d streams, %d threads serving", len(k.streams), len(k.serving))
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
