package correlate

import (
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/h2"
)

// GoH2Stream says that a Go net/http client's call to a model API was
// given an HTTP/2 stream on a TLS connection: from then on the plaintext
// of that connection's writes and reads comes in GoBody records with H2
// set and Conn the same, and the stream's frames in them are the call's.
type GoH2Stream struct {
	PID  uint32
	Conn uint64 // the *tls.Conn
	// SpanID is the span of the round trip the stream carries.
	SpanID   trace.SpanID
	StreamID uint32
	Time     time.Time
	// Path is the request's path, or its last bytes when PathCut.
	Path    string
	PathCut bool
}

// ProcessID implements Event.
func (s *GoH2Stream) ProcessID() uint32 { return s.PID }

// goH2ConnsMax bounds the HTTP/2 connections followed at once; the one
// idle longest is closed beyond.
const goH2ConnsMax = 256

// goH2Conn is one HTTP/2 connection a model call used: its frames, and
// which of its streams are calls.
type goH2Conn struct {
	key   goConnKey
	conn  *h2.Conn
	calls map[uint32]*goCall
	// next is the offset of the next byte expected each way; seen says a
	// direction's first bytes came (the offsets count from when the
	// connection was first watched, which need not be its first byte).
	next [2]uint64
	seen [2]bool
	last time.Time
	// maxID is the highest stream ID a call was given on it: IDs only
	// grow on a connection, so a lower one is another connection at the
	// same address (the first was closed and its memory reused).
	maxID uint32
}

// h2stream handles a GoH2Stream record.
func (g *goCalls) h2stream(e *GoH2Stream) []*model.Span {
	g.out = g.out[:0]
	g.maybeSweep(e.Time)
	ck := goConnKey{e.PID, e.Conn}
	key := goCallKey{e.PID, e.SpanID}
	c := g.byID[key]
	if old := g.h2[ck]; old != nil && e.StreamID <= old.maxID && !(c != nil && c.h2 == old && c.stream == e.StreamID) {
		g.closeH2(old, e.Time)
		c = g.byID[key]
	}
	hc := g.h2conn(ck, e.Time)
	hc.maxID = max(hc.maxID, e.StreamID)
	switch {
	case c != nil && c.h2 == hc && c.stream == e.StreamID:
		// The probe fired twice for one call (morestack).
		return g.out
	case c != nil && c.h2 != nil:
		// Retried on another stream: the first was not answered.
		if c.h2.calls[c.stream] == c {
			delete(c.h2.calls, c.stream)
		}
	case c == nil:
		if len(g.byID) >= goCallsMax {
			g.evictOldest()
		}
		c = &goCall{key: key, strings: g.strings, cfg: g.cfg}
		g.byID[key] = c
	}
	c.h2, c.stream, c.last = hc, e.StreamID, e.Time
	hc.calls[e.StreamID] = c
	hc.conn.Hint(e.StreamID, "POST", e.Path)
	return g.out
}

// h2conn finds or starts following the HTTP/2 connection k.
func (g *goCalls) h2conn(k goConnKey, t time.Time) *goH2Conn {
	hc := g.h2[k]
	if hc == nil {
		if len(g.h2) >= goH2ConnsMax {
			var oldest *goH2Conn
			for _, o := range g.h2 {
				if oldest == nil || o.last.Before(oldest.last) {
					oldest = o
				}
			}
			g.closeH2(oldest, oldest.last)
		}
		hc = &goH2Conn{key: k, conn: h2.NewConn(h2.Options{GenAI: g.cfg, Strings: g.strings}), calls: map[uint32]*goCall{}}
		g.h2[k] = hc
	}
	hc.last = t
	return hc
}

// h2body reads a write or read of a followed HTTP/2 connection.
func (g *goCalls) h2body(b *GoBody) []*model.Span {
	g.out = g.out[:0]
	g.maybeSweep(b.Time)
	hc := g.h2[goConnKey{b.PID, b.Conn}]
	if hc == nil {
		// Closed here (idle, or to bound memory) while still watched.
		return g.out
	}
	hc.last = b.Time
	d := h2.ToClient
	if b.Write {
		d = h2.ToServer
	}
	data, pos := b.Data, b.Offset
	if b.Tail {
		pos = b.Offset + uint64(b.Total) - uint64(len(data))
	}
	switch {
	case !hc.seen[d]:
		hc.seen[d] = true
	case pos > hc.next[d]:
		// Bytes not copied (the middle of a long write or read), or a
		// record lost.
		hc.conn.Gap(d, int(pos-hc.next[d]))
	case pos < hc.next[d]:
		skip := hc.next[d] - pos
		if skip >= uint64(len(data)) {
			return g.out
		}
		data, pos = data[skip:], pos+skip
	}
	hc.next[d] = pos + uint64(len(data))
	g.h2out = hc.conn.Feed(g.h2out[:0], d, b.Time, data)
	g.h2ended(hc, g.h2out, b.Time)
	if b.EOF {
		g.closeH2(hc, b.Time)
	}
	return g.out
}

// h2ended takes the streams of hc that ended at t: those that are calls
// end, with their last frame, or at t when reset (the frame that cut
// them carried no data).
func (g *goCalls) h2ended(hc *goH2Conn, streams []*h2.Stream, t time.Time) {
	for _, st := range streams {
		c := hc.calls[st.ID]
		if c == nil {
			continue
		}
		delete(hc.calls, st.ID)
		c.ended, c.end, c.h2x = true, st.End, st.GenAI
		if st.How == h2.EndReset || st.How == h2.EndGoAway || c.end.IsZero() {
			c.end = t
		}
		if c.span != nil {
			g.finish(c)
		}
	}
}

// closeH2 stops following hc at t: its streams still open end there.
func (g *goCalls) closeH2(hc *goH2Conn, t time.Time) {
	delete(g.h2, hc.key)
	g.h2out = hc.conn.Close(g.h2out[:0], t)
	g.h2ended(hc, g.h2out, t)
	for id, c := range hc.calls {
		// Streams the parser never saw a frame of.
		delete(hc.calls, id)
		g.endCall(c, c.last, model.GenAIEndUnknown)
	}
}

// finishH2 gives c's span the GenAI exchange its stream carried (none
// when the stream was not read whole enough to tell) and its end, and
// sends it.
func (g *goCalls) finishH2(c *goCall) {
	g.forget(c)
	s := c.span
	if c.end.After(s.End) {
		s.End = c.end
	}
	if c.h2x != nil {
		s.GenAI = c.h2x
	}
	g.out = append(g.out, s)
}
