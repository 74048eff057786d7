package http1

import (
	"bytes"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
)

// Calls to model APIs (a POST to a path genai recognises) are read further
// than other requests: the body bytes the capture gives (today, those that
// came with the head in the same read or write, and the read after a
// request's first) go to a genai.Exchange, and the span gets its GenAI
// exchange when it ends. What the capture did not give is marked cut.
// Nothing of this runs for other requests but the path's recognition.

// maxFreeExchanges bounds the exchanges kept for reuse.
const maxFreeExchanges = 2

// startGenAI makes h a model call when its method and target are one's.
func (p *parser) startGenAI(h *head) {
	if h.method != "POST" {
		return
	}
	cfg := p.env.Conn().GenAI
	api, ok := cfg.Recognize(h.method, h.target)
	if !ok {
		return
	}
	if n := len(p.freeX); n > 0 {
		h.gx = p.freeX[n-1]
		p.freeX = p.freeX[:n-1]
	} else {
		h.gx = &genai.Exchange{}
	}
	if p.strings == nil {
		p.strings = genai.NewStrings()
	}
	h.gx.Reset(api, cfg.Options(p.strings))
	h.bodyLeft = -1
}

// requestBody feeds the body bytes of a model call's request: b, the bytes
// the capture holds of a read or write after the head, of n read or
// written after it in all. body is the Content-Length (or bodyUnknown,
// bodyChunked). Once bytes were lost, no more are fed: the scan would
// lose its place.
func requestBody(h *head, b []byte, n int64, body int) {
	if h.gx == nil {
		return
	}
	if h.bodyLeft < 0 {
		if body < 0 {
			// Chunked or unframed: not read (a model API's client
			// sends a Content-Length).
			h.reqLost = true
			return
		}
		h.bodyLeft = int64(body)
	}
	in := min(max(n, int64(len(b))), h.bodyLeft)
	if !h.reqLost {
		fed := min(int64(len(b)), h.bodyLeft)
		h.gx.RequestBody(b[:fed])
		if in > fed {
			h.reqLost = true // the capture kept less than was read
		}
	}
	// Counted even when lost: a read's tail (readTail) counts only at
	// the body's end.
	h.bodyLeft -= in
}

// bodyEnd takes the last bytes of a model call's request read or write
// (s.End, past its Data): the end of its body, when the segment ended it.
// Right after what Data held they continue the body; after a gap, they are
// its tail (jscan.Tail reads the members after the gap).
func bodyEnd(h *head, s *protocols.Segment) {
	if h.gx == nil || h.open || !h.reqLost || h.bodyLeft != 0 || len(s.End) == 0 {
		return
	}
	if int(s.Len) == h.lastRead+len(s.End) {
		h.gx.RequestBody(s.End)
		h.reqLost = false
		return
	}
	h.gx.RequestTail(s.End)
}

// dropGenAI gives up h's model call (its request was dropped unanswered):
// its exchange goes back for reuse.
func (p *parser) dropGenAI(h *head) {
	if len(p.freeX) < maxFreeExchanges {
		p.freeX = append(p.freeX, h.gx)
	}
	h.gx = nil
}

// responseHead reads a model call's response head (data, the first bytes
// of its segment) and the body bytes after it in data. It returns the
// body's decoder, for the bytes that follow (what the segment held past
// data is the caller's: reply.past).
func responseHead(h *head, status int, data []byte, t time.Time) (dc Dechunk) {
	x := h.gx
	_, fields, found := bytes.Cut(data, crlf)
	if !found {
		x.ResponseHead(status, "", "")
		dc.lost = true
		return dc
	}
	ctype, cenc, rest, body, ended := responseFields(fields)
	x.ResponseHead(status, string(ctype), string(cenc))
	if !ended {
		dc.lost = true
		return dc
	}
	dc.chunked = body == bodyChunked
	dc.Feed(rest, func(b []byte) { x.ResponseBody(t, b) })
	return dc
}

// responseFields reads a response's head fields: its Content-Type and
// Content-Encoding, what follows the head, the body's length and whether
// the head ended.
func responseFields(b []byte) (ctype, cenc, rest []byte, body int, ended bool) {
	rest, body, ended = parseFields(b, nil, "")
	for {
		line, after, found := bytes.Cut(b, crlf)
		if !found || len(line) == 0 {
			break
		}
		b = after
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case lowerIs(name, "content-type"):
			ctype = bytes.TrimSpace(value)
		case lowerIs(name, "content-encoding"):
			cenc = bytes.TrimSpace(value)
		}
	}
	return ctype, cenc, rest, body, ended
}

// finishGenAI gives s the GenAI exchange h read, when it was a model
// call, and readies the exchange for reuse.
func (p *parser) finishGenAI(s *model.Span, h *head, end model.GenAIEnd) {
	x := h.gx
	if x == nil {
		return
	}
	h.gx = nil
	if h.reqLost || h.bodyLeft != 0 {
		x.MarkCut(model.GenAICutRequest)
	}
	if h.respLost {
		x.MarkCut(model.GenAICutResponse)
	}
	if !x.Finish(s.UseGenAI(), end) {
		s.GenAI = nil
	}
	if len(p.freeX) < maxFreeExchanges {
		p.freeX = append(p.freeX, x)
	}
}

// Dechunk takes the framing off a chunked body's bytes as they come; a
// body with no chunked framing passes through. The kernel path's model
// calls and the Go probes' (correlate) read their bodies through it.
type Dechunk struct {
	chunked bool
	lost    bool  // bytes were not captured: the framing's place is lost
	left    int64 // data bytes left in the current chunk
	state   chunkState
	size    int64
}

type chunkState uint8

const (
	chunkSize  chunkState = iota // in the size line's digits
	chunkExt                     // in the rest of the size line
	chunkData                    // in a chunk's data
	chunkCRLF                    // in the CRLF after the data
	chunkTrail                   // after the last chunk
)

// NewDechunk reads a body framed with chunks when chunked is true, else
// passes it through.
func NewDechunk(chunked bool) Dechunk { return Dechunk{chunked: chunked} }

// Ended says the chunked body's last (zero-length) chunk was read.
func (d *Dechunk) Ended() bool { return d.chunked && d.state == chunkTrail }

// Feed passes the body bytes in b to out, without the chunk framing.
func (d *Dechunk) Feed(b []byte, out func([]byte)) {
	if d.lost {
		return
	}
	if !d.chunked {
		if len(b) > 0 {
			out(b)
		}
		return
	}
	for len(b) > 0 {
		switch d.state {
		case chunkSize:
			c := b[0]
			b = b[1:]
			switch {
			case '0' <= c && c <= '9':
				d.size = d.size<<4 | int64(c-'0')
			case 'a' <= c && c <= 'f':
				d.size = d.size<<4 | int64(c-'a'+10)
			case 'A' <= c && c <= 'F':
				d.size = d.size<<4 | int64(c-'A'+10)
			case c == '\n':
				d.startChunk()
			default:
				d.state = chunkExt
			}
			if d.size > 1<<40 {
				d.lost = true
				return
			}
		case chunkExt:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return
			}
			b = b[i+1:]
			d.startChunk()
		case chunkData:
			k := min(int64(len(b)), d.left)
			out(b[:k])
			b = b[k:]
			if d.left -= k; d.left == 0 {
				d.state = chunkCRLF
			}
		case chunkCRLF:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return
			}
			b = b[i+1:]
			d.state, d.size = chunkSize, 0
		case chunkTrail:
			return
		}
	}
}

func (d *Dechunk) startChunk() {
	if d.size == 0 {
		d.state = chunkTrail
		return
	}
	d.state, d.left = chunkData, d.size
}
