package correlate

import (
	"bytes"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/correlate/protocols/h2"
	"github.com/zerotrace/zerotrace/correlate/protocols/http1"
)

// GoBody is the bytes of one write or read of a Go net/http client's
// HTTP/1.x connection while a call to a model API uses it (the net/http
// client probe copies them only then): the request as written, head and
// body, and the response as read.
type GoBody struct {
	PID  uint32
	Conn uint64 // the connection (*persistConn)
	// SpanID is the span of the round trip using the connection.
	SpanID trace.SpanID
	Time   time.Time
	// Offset is how many bytes of this direction the round trip wrote or
	// read before this write or read; Total how many it carried.
	Offset uint64
	Total  uint32
	// Write: request bytes, else response bytes. Tail: Data are the
	// write's or read's last bytes, those before them not copied. EOF:
	// the read returned nothing, the connection ended. H2: the bytes of
	// an HTTP/2 connection (Conn is its *tls.Conn, SpanID zero, Offset
	// counted from when it was first watched; see GoH2Stream).
	Write, Tail, EOF, H2 bool
	Data                 []byte
}

// ProcessID implements Event.
func (b *GoBody) ProcessID() uint32 { return b.PID }

// GoModelCall is the CLIENT span of a Go round trip that called a model
// API over HTTP/1.x: GoBody records with its span ID carry its bodies. The
// correlator holds it until its response's body ends, which ends it, and
// gives it its GenAI exchange.
type GoModelCall struct {
	Span *model.Span
}

// ProcessID implements Event.
func (c *GoModelCall) ProcessID() uint32 { return c.Span.PID }

// Bounds of what the Go model-call join keeps.
const (
	// goCallsMax bounds the calls followed at once; the oldest is ended
	// (as it is) beyond.
	goCallsMax = 1024
	// goCallIdle ends a call no byte came for in that long.
	goCallIdle = 10 * time.Minute
	// goHeadMax bounds an HTTP head kept while it arrives in pieces.
	goHeadMax = 16 << 10
)

type goCallKey struct {
	pid  uint32
	span trace.SpanID
}

type goConnKey struct {
	pid  uint32
	conn uint64
}

// goCalls joins Go model calls' spans to their bytes.
type goCalls struct {
	// cfg recognises calls and says what to keep of them (nil: defaults).
	cfg     *genai.Config
	swept   time.Time
	byID    map[goCallKey]*goCall
	byConn  map[goConnKey]*goCall
	strings *genai.Strings
	out     []*model.Span
	// free are exchanges kept for reuse (a few KiB each).
	free []*genai.Exchange
	// h2 are the HTTP/2 connections model calls used (goh2.go).
	h2    map[goConnKey]*goH2Conn
	h2out []*h2.Stream
}

func newGoCalls() *goCalls {
	return &goCalls{
		byID:    map[goCallKey]*goCall{},
		byConn:  map[goConnKey]*goCall{},
		h2:      map[goConnKey]*goH2Conn{},
		strings: genai.NewStrings(),
	}
}

// goCall is one model call being read.
type goCall struct {
	key     goCallKey
	conn    goConnKey
	span    *model.Span // nil until the round trip's record came
	api     model.GenAIAPI
	x       *genai.Exchange
	strings *genai.Strings
	cfg     *genai.Config
	last    time.Time // when its last bytes came

	req, resp goSide
	ended     bool // the response's body ended
	end       time.Time
	how       model.GenAIEnd

	// Over HTTP/2: the connection and stream (x is then unused), and
	// what the stream carried once it ended.
	h2     *goH2Conn
	stream uint32
	h2x    *model.GenAI
}

// goSide is one direction of a call: its head, then its body.
type goSide struct {
	next     uint64 // the next byte expected (from the round trip's first)
	head     []byte // the head, while it is not whole
	headLen  uint64 // bytes of the head, once whole (0 before)
	bodyLen  int64  // Content-Length, -1 unknown
	chunked  bool
	lost     bool // a gap: bytes were not copied
	tail     []byte
	tailEnd  uint64
	dc       http1.Dechunk
	started  bool
	status   int
	finished bool
	// The request line's.
	method, target string
}

// body handles one GoBody record.
func (g *goCalls) body(b *GoBody) []*model.Span {
	if b.H2 {
		return g.h2body(b)
	}
	g.out = g.out[:0]
	key := goCallKey{b.PID, b.SpanID}
	c := g.byID[key]
	if c == nil && b.EOF {
		// The connection of a call already ended closed.
		return g.out
	}
	if c == nil {
		ck := goConnKey{b.PID, b.Conn}
		if old := g.byConn[ck]; old != nil {
			// The connection went on to another call: the previous one's
			// response was read whole.
			g.endCall(old, old.last, model.GenAIEndUnknown)
		}
		if len(g.byID) >= goCallsMax {
			g.evictOldest()
		}
		c = &goCall{key: key, conn: ck, strings: g.strings, cfg: g.cfg}
		if n := len(g.free); n > 0 {
			c.x, g.free = g.free[n-1], g.free[:n-1]
		} else {
			c.x = &genai.Exchange{}
		}
		c.req.bodyLen, c.resp.bodyLen = -1, -1
		g.byID[key] = c
		g.byConn[ck] = c
	}
	c.last = b.Time
	g.maybeSweep(b.Time)
	if c.ended {
		return g.out
	}
	if b.Write {
		c.request(b)
	} else {
		c.response(b)
	}
	if c.ended && c.span != nil {
		g.finish(c)
	}
	return g.out
}

// call handles a model call's span, which comes once its response head
// did (or the round trip failed).
func (g *goCalls) call(m *GoModelCall) []*model.Span {
	g.out = g.out[:0]
	key := goCallKey{m.Span.PID, m.Span.SpanID}
	c := g.byID[key]
	if c == nil {
		// No byte of it was copied (the request failed before it was
		// written): a plain HTTP span.
		g.out = append(g.out, m.Span)
		return g.out
	}
	c.span = m.Span
	if c.ended || m.Span.Failure.Failed {
		if !c.ended {
			c.ended, c.end, c.how = true, m.Span.End, model.GenAIEndUnknown
		}
		g.finish(c)
	}
	return g.out
}

// maybeSweep sweeps at most once a minute.
func (g *goCalls) maybeSweep(now time.Time) {
	if now.Sub(g.swept) > time.Minute {
		g.swept = now
		g.sweep(now)
	}
}

// maybeSweepAt is maybeSweep with no event, at the wall clock's now: the
// spans it ends.
func (g *goCalls) maybeSweepAt(now time.Time) []*model.Span {
	g.out = g.out[:0]
	g.maybeSweep(now)
	return g.out
}

// sweep ends the calls idle since before now-goCallIdle, and stops
// following the HTTP/2 connections idle as long.
func (g *goCalls) sweep(now time.Time) {
	for _, hc := range g.h2 {
		if now.Sub(hc.last) > goCallIdle {
			g.closeH2(hc, hc.last)
		}
	}
	for _, c := range g.byID {
		if now.Sub(c.last) > goCallIdle {
			g.endCall(c, c.last, model.GenAIEndUnknown)
		}
	}
}

// flush ends every call (the events stopped).
func (g *goCalls) flush(pid uint32, all bool) []*model.Span {
	g.out = g.out[:0]
	for _, hc := range g.h2 {
		if all || hc.key.pid == pid {
			g.closeH2(hc, hc.last)
		}
	}
	for _, c := range g.byID {
		if all || c.key.pid == pid {
			g.endCall(c, c.last, model.GenAIEndUnknown)
		}
	}
	return g.out
}

func (g *goCalls) evictOldest() {
	var oldest *goCall
	for _, c := range g.byID {
		if oldest == nil || c.last.Before(oldest.last) {
			oldest = c
		}
	}
	if oldest != nil {
		g.endCall(oldest, oldest.last, model.GenAIEndUnknown)
	}
}

// endCall ends c at t: its span goes out when it has one, else it is
// forgotten.
func (g *goCalls) endCall(c *goCall, t time.Time, how model.GenAIEnd) {
	if !c.ended {
		c.ended, c.end, c.how = true, t, how
	}
	if c.span != nil {
		g.finish(c)
		return
	}
	g.forget(c)
}

func (g *goCalls) forget(c *goCall) {
	if c.span == nil && c.x != nil && len(g.free) < 4 {
		g.free = append(g.free, c.x)
	}
	if c.h2 != nil && c.h2.calls[c.stream] == c {
		delete(c.h2.calls, c.stream)
	}
	delete(g.byID, c.key)
	if g.byConn[c.conn] == c {
		delete(g.byConn, c.conn)
	}
}

// finish gives c's span its GenAI exchange and end, and sends it.
func (g *goCalls) finish(c *goCall) {
	if c.h2 != nil {
		g.finishH2(c)
		return
	}
	g.forget(c)
	s := c.span
	if c.end.After(s.End) {
		s.End = c.end
	}
	x := c.x
	if c.api == model.GenAINone {
		g.out = append(g.out, s)
		return
	}
	if !c.req.finished || c.req.lost {
		x.MarkCut(model.GenAICutRequest)
	}
	if c.resp.lost {
		if len(c.resp.tail) > 0 && !c.resp.chunked {
			x.ResponseTail(c.resp.tail)
		}
		x.MarkCut(model.GenAICutResponse)
	}
	if !x.Finish(s.UseGenAI(), c.how) {
		s.GenAI = nil
	}
	g.out = append(g.out, s)
	if len(g.free) < 4 {
		g.free = append(g.free, x)
	}
}

// request reads request bytes: the head, then the body into the Exchange.
func (c *goCall) request(b *GoBody) {
	s := &c.req
	data, pos := b.Data, b.Offset
	if b.Tail {
		pos = b.Offset + uint64(b.Total) - uint64(len(data))
	}
	if pos != s.next {
		s.lost = true
	}
	if s.lost {
		// Only the body's last bytes are of use after a gap.
		if s.headLen > 0 && s.bodyLen >= 0 && pos+uint64(len(data)) == s.headLen+uint64(s.bodyLen) && pos >= s.headLen {
			c.x.RequestTail(data)
			s.finished = true
		}
		return
	}
	s.next += uint64(len(data))
	if s.headLen == 0 {
		rest, ok := s.takeHead(data)
		if !ok {
			return
		}
		data = rest
		c.api, _ = c.cfg.Recognize(s.method, s.target)
		if c.api == model.GenAINone {
			s.lost = true
			return
		}
		c.x.Reset(c.api, c.cfg.Options(c.strings))
	}
	if c.api == model.GenAINone {
		return
	}
	if s.bodyLen >= 0 {
		left := s.headLen + uint64(s.bodyLen) - (s.next - uint64(len(data)))
		if uint64(len(data)) > left {
			data = data[:left]
		}
		c.x.RequestBody(data)
		if s.next >= s.headLen+uint64(s.bodyLen) {
			s.finished = true
		}
	}
}

// takeHead adds data to the head being read; once it is whole it returns
// the bytes after it.
func (s *goSide) takeHead(data []byte) ([]byte, bool) {
	prev := len(s.head)
	s.head = append(s.head, data...)
	i := bytes.Index(s.head, []byte("\r\n\r\n"))
	if i < 0 {
		if len(s.head) > goHeadMax {
			s.lost = true
		}
		return nil, false
	}
	s.headLen = s.next - uint64(len(data)) - uint64(prev) + uint64(i) + 4
	s.parseHead(s.head[:i+2])
	s.head = nil
	return data[i+4-prev:], true
}

// parseHead reads the framing of a head (its lines, each ending in CRLF).
func (s *goSide) parseHead(h []byte) (ctype, cenc string) {
	first := true
	for len(h) > 0 {
		line, rest, _ := bytes.Cut(h, []byte("\r\n"))
		h = rest
		if first {
			first = false
			// HTTP/1.1 200 OK, or POST /v1/chat/completions HTTP/1.1
			if f := bytes.Fields(line); len(f) >= 2 && bytes.HasPrefix(f[0], []byte("HTTP/")) {
				s.status, _ = strconv.Atoi(string(f[1]))
			} else if len(f) >= 2 {
				s.method, s.target = string(f[0]), string(f[1])
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
				s.bodyLen = n
			}
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			s.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("content-type")):
			ctype = string(value)
		case bytes.EqualFold(name, []byte("content-encoding")):
			cenc = string(value)
		}
	}
	if s.chunked {
		s.bodyLen = -1
	}
	return ctype, cenc
}

// response reads response bytes: the head, then the body, de-chunked,
// into the Exchange; the call ends with its body.
func (c *goCall) response(b *GoBody) {
	s := &c.resp
	if c.api == model.GenAINone {
		// The request's head was not read: nothing says which API.
		s.lost = true
	}
	if b.EOF {
		c.ended, c.end, c.how = true, b.Time, model.GenAIEndClosed
		return
	}
	data, pos := b.Data, b.Offset
	if b.Tail {
		pos = b.Offset + uint64(b.Total) - uint64(len(data))
	}
	if pos != s.next {
		s.lost = true
	}
	if s.lost {
		s.tail = append(s.tail[:0], data...)
		s.tailEnd = pos + uint64(len(data))
		if s.headLen > 0 && s.bodyLen >= 0 && s.tailEnd >= s.headLen+uint64(s.bodyLen) {
			c.ended, c.end, c.how = true, b.Time, model.GenAIEndFraming
		}
		return
	}
	s.next += uint64(len(data))
	if s.headLen == 0 {
		prev := len(s.head)
		s.head = append(s.head, data...)
		i := bytes.Index(s.head, []byte("\r\n\r\n"))
		if i < 0 {
			if len(s.head) > goHeadMax {
				s.lost = true
			}
			return
		}
		s.headLen = s.next - uint64(len(data)) - uint64(prev) + uint64(i) + 4
		ctype, cenc := s.parseHead(s.head[:i+2])
		s.head = nil
		data = data[i+4-prev:]
		if s.status >= 100 && s.status < 200 {
			// An interim response: the real head follows.
			*s = goSide{next: s.next, bodyLen: -1}
			c.response(&GoBody{Time: b.Time, Offset: s.next, Data: data})
			return
		}
		c.x.ResponseHead(s.status, ctype, cenc)
		s.dc = http1.NewDechunk(s.chunked)
		if s.bodyLen == 0 {
			c.ended, c.end, c.how = true, b.Time, model.GenAIEndFraming
			return
		}
	}
	if s.bodyLen >= 0 {
		left := s.headLen + uint64(s.bodyLen) - (s.next - uint64(len(data)))
		if uint64(len(data)) >= left {
			data = data[:left]
			c.x.ResponseBody(b.Time, data)
			c.ended, c.end, c.how = true, b.Time, model.GenAIEndFraming
			return
		}
	}
	done := false
	s.dc.Feed(data, func(p []byte) {
		if c.x.ResponseBody(b.Time, p) {
			done = true
		}
	})
	switch {
	case done:
		c.ended, c.end, c.how = true, b.Time, model.GenAIEndDone
	case s.dc.Ended():
		c.ended, c.end, c.how = true, b.Time, model.GenAIEndFraming
	}
}
