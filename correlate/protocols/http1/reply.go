package http1

import (
	"bytes"
	"time"

	"github.com/zerotrace/zerotrace/correlate/protocols"
)

// framing is how a response's end is found.
type framing uint8

const (
	// framedNone: the response ends with its head (no body, or a head
	// whose framing is past the capture and so taken to end there).
	framedNone    framing = iota
	framedLength          // Content-Length bytes follow the head
	framedChunked         // ends with the zero-size chunk
	framedClose           // ends when the connection does
)

// reply is a response the process is writing: its head was written, its
// body may go on (a streamed answer for as long as it streams). Its span
// ends where the body ends. The answer to a model call the process made
// is read the same way (the kernel path reports those reads).
type reply struct {
	req     *head // nil when no response is being written
	status  int
	last    time.Time // when its last write began
	framing framing
	left    int64   // body bytes still to come (framedLength)
	dc      Dechunk // a model call's body, as it is read
	// tail is the newest last bytes of a model call's body seen since
	// bytes were lost: read backwards at the end (genai's ResponseTail).
	tail []byte
}

// start reads how the response whose head s writes is framed, and whether
// s already holds all of it.
func (r *reply) start(req *head, status int, s *protocols.Segment) bool {
	*r = reply{req: req, status: status, last: s.Time}
	if req.gx != nil {
		r.dc = responseHead(req, status, s.Data, s.Time)
		r.past(s)
	}
	if req.method == "HEAD" || status == 204 || status == 304 || status == 101 || s.Partial {
		// No body, or a write whose end is unknown: the response ends
		// here, as it is written.
		return true
	}
	// The status line, then the fields as a request's are read.
	_, fields, found := bytes.Cut(s.Data, crlf)
	if !found {
		return true // the framing fields are past the capture
	}
	rest, body, ended := parseFields(fields, nil, "")
	if !ended {
		return true
	}
	switch {
	case body == bodyChunked:
		r.framing = framedChunked
		return chunkedEnd(s.Tail)
	case body >= 0:
		r.framing = framedLength
		head := len(s.Data) - len(rest)
		r.left = int64(body) - (int64(s.Len) - int64(head))
		return r.left <= 0
	}
	r.framing = framedClose
	return false
}

// more adds a later write of the body and says whether the response ended
// with it.
func (r *reply) more(s *protocols.Segment) bool {
	r.last = s.Time
	if x := r.req.gx; x != nil {
		// A model call's body: what the capture holds of it.
		r.dc.Feed(s.Data, func(b []byte) { x.ResponseBody(s.Time, b) })
		r.past(s)
	}
	if s.Partial {
		return true // where it ends is not known: take it to end here
	}
	switch r.framing {
	case framedLength:
		r.left -= int64(s.Len)
		return r.left <= 0
	case framedChunked:
		return chunkedEnd(s.Tail)
	case framedClose:
		return false
	}
	return true
}

// past reads what a model call's segment held past its Data: its End
// right after Data is more of the body; after a gap, or with nothing
// copied past Data, the body's place is lost: a stream's last bytes are
// read at once (its end may be among them), a document's kept for the end
// (finishTail).
func (r *reply) past(s *protocols.Segment) {
	x := r.req.gx
	whole := int(s.Len) <= len(s.Data)
	if !whole && len(s.End) > 0 && int(s.Len) == len(s.Data)+len(s.End) {
		r.dc.Feed(s.End, func(b []byte) { x.ResponseBody(s.Time, b) })
		whole = true
	}
	if !whole {
		r.dc.lost = true
	}
	if !r.dc.lost {
		return
	}
	if x.Streaming() {
		// A stream picks up again at its next event in what the
		// segment's last bytes hold: its end may be there.
		if t := s.End; len(t) > 0 || whole {
			if len(t) == 0 {
				t = s.Data
			}
			x.ResponseTail(r.trimChunkEnd(t))
		}
		return
	}
	switch {
	case len(s.End) > 0:
		r.tail = append(r.tail[:0], s.End...)
	case whole && len(s.Data) > 0:
		r.tail = append(r.tail[:0], s.Data...)
	default:
		r.tail = r.tail[:0] // the body's last bytes were not copied
	}
}

// finishTail gives a model call's exchange the last bytes of its body
// kept since bytes were lost, without the chunked framing's end: the
// fields after the gap (usage, finish reason, a stream's last events).
func (r *reply) finishTail() {
	x := r.req.gx
	if !r.dc.lost || len(r.tail) == 0 || x.Done() {
		return
	}
	x.ResponseTail(r.trimChunkEnd(r.tail))
}

// trimChunkEnd takes the chunked framing's end off a body's last bytes.
func (r *reply) trimChunkEnd(t []byte) []byte {
	if r.dc.chunked {
		t = bytes.TrimSuffix(t, []byte("0\r\n\r\n"))
		t = bytes.TrimSuffix(t, crlf)
	}
	return t
}

// chunkedEnd says whether a write whose last bytes are tail ends a chunked
// body: it ends with the zero-size chunk and the blank line after it, or
// its last buffer is exactly that.
func chunkedEnd(tail []byte) bool {
	return bytes.HasSuffix(tail, []byte("\r\n0\r\n\r\n")) || bytes.Equal(tail, []byte("0\r\n\r\n"))
}
