package correlate

import (
	"bytes"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"go.opentelemetry.io/otel/trace"
)

// bodyFraming is how a response's end is found.
type bodyFraming uint8

const (
	// bodyNone: the response ends with its head (no body, or a head whose
	// framing is past the capture and so taken to end there).
	bodyNone    bodyFraming = iota
	bodyLength              // Content-Length bytes follow the head
	bodyChunked             // ends with the zero-size chunk
	bodyClose               // ends when the connection does
)

// reply is a response a server traced from the kernel is writing: its head
// was written, its body may go on (a streamed answer for as long as it
// streams). Its span ends where the body ends.
type reply struct {
	req     *httpHead
	status  int
	last    time.Time // when its last write began
	framing bodyFraming
	left    int64 // body bytes still to come (bodyLength)
}

// startReply reads how the response whose head d writes is framed, and
// whether d already holds all of it.
func startReply(req *httpHead, status int, d *SockData) (*reply, bool) {
	r := &reply{req: req, status: status, last: d.Time}
	if req.method == "HEAD" || status == 204 || status == 304 || status == 101 || d.Partial {
		// No body, or a write whose end is unknown: the response ends
		// here, as it is written.
		return r, true
	}
	// The status line, then the fields as a request's are read.
	_, fields, found := bytes.Cut(d.Data, []byte("\r\n"))
	if !found {
		return r, true // the framing fields are past the capture
	}
	var h httpHead
	rest, body, ended := h.parseFields(fields)
	if !ended {
		return r, true
	}
	switch {
	case body == -2:
		r.framing = bodyChunked
		return r, chunkedEnd(d.Tail)
	case body >= 0:
		r.framing = bodyLength
		head := len(d.Data) - len(rest)
		r.left = int64(body) - (int64(d.Len) - int64(head))
		return r, r.left <= 0
	}
	r.framing = bodyClose
	return r, false
}

// more adds a later write of the body and says whether the response ended
// with it.
func (r *reply) more(d *SockData) bool {
	r.last = d.Time
	if d.Partial {
		return true // where it ends is not known: take it to end here
	}
	switch r.framing {
	case bodyLength:
		r.left -= int64(d.Len)
		return r.left <= 0
	case bodyChunked:
		return chunkedEnd(d.Tail)
	case bodyClose:
		return false
	}
	return true
}

// chunkedEnd says whether a write whose last bytes are tail ends a chunked
// body: it ends with the zero-size chunk and the blank line after it, or
// its last buffer is exactly that.
func chunkedEnd(tail []byte) bool {
	return bytes.HasSuffix(tail, []byte("\r\n0\r\n\r\n")) || bytes.Equal(tail, []byte("0\r\n\r\n"))
}

// endReply completes the response st is writing: its span ends with its
// last write, and its thread is done serving it.
func (k *kernelTracer) endReply(pid uint32, st *sockStream) {
	r := st.sending
	st.sending = nil
	k.leave(pid, r.req)
	k.out = append(k.out, kernelSpan(r.req, r.status, r.last, trace.SpanKindServer, st))
}

// flush ends every response still being written, giving each span with its
// process's PID to yield.
func (k *kernelTracer) flush(yield func(pid uint32, s *model.Span)) {
	for key, st := range k.streams {
		if st.sending != nil {
			k.out = k.out[:0]
			k.endReply(key.pid, st)
			yield(key.pid, k.out[0])
		}
	}
	k.out = k.out[:0]
}
