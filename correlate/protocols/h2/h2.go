// Package h2 follows HTTP/2 on one connection from its two byte streams of
// plaintext (the TLS plaintext a probe reads, the client's writes and its
// reads), fed in pieces of any size: it frames them, decodes the header
// blocks with HPACK when the connection was seen from its client preface,
// and reads each stream's method, path, status and content type, its
// request and response DATA in order with their times, and how it ended.
// A stream that calls a model API (genai.Config's Recognize on its method
// and path) has its bodies read by a genai.Exchange, so that the stream
// yields its GenAI exchange and the time its response ended.
//
// A connection opened before the capture started cannot have its header
// blocks decoded (HPACK's dynamic tables are unknown), so the parser finds
// the frame boundaries again (a plausible frame header confirmed by the
// one after it), counts the header blocks it skips, and learns a stream's
// method and path from a hint a probe gives (Hint: the stream ID and the
// request's path, read from the client's own request).
//
// What a Conn holds is bounded whatever it is fed (streams, hints, the
// HPACK tables, the bytes kept to find the framing again), malformed input
// is counted and never panics, and no reference to the bytes fed is kept.
// Like the other parsers it is plain Go and not safe for concurrent use.
package h2

import (
	"bytes"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
)

// Dir is which way bytes went on the connection, in HTTP/2's terms.
type Dir uint8

// Directions.
const (
	// ToServer: the client's bytes (its preface, requests, their DATA).
	ToServer Dir = iota
	// ToClient: the server's bytes (responses).
	ToClient
)

// How says how a stream came to its end.
type How uint8

// Ends of a stream.
const (
	// EndStream: the response's END_STREAM.
	EndStream How = iota + 1
	// EndReset: a RST_STREAM, either way.
	EndReset
	// EndGoAway: the server's GOAWAY said it would not process it.
	EndGoAway
	// EndClosed: the connection ended first (Close).
	EndClosed
	// EndEvicted: given up to bound the streams followed at once.
	EndEvicted
)

// Stream is one HTTP/2 stream as seen, handed out once it ended.
type Stream struct {
	ID uint32
	// Method, Path and Authority are the request's pseudo-headers (from
	// HPACK or a hint; "" when unknown).
	Method, Path, Authority string
	// Status is the final response status (0 unknown); ContentType and
	// ContentEncoding the response's headers.
	Status                       int
	ContentType, ContentEncoding string
	// Decoded: the request's headers were decoded (not hinted).
	Decoded bool
	// Start is when the request's first frame was seen, ResponseStart
	// the response's, End its last (the last DATA or END_STREAM).
	Start, ResponseStart, End time.Time
	// RequestBytes and ResponseBytes count DATA payload (padding not
	// included) seen each way.
	RequestBytes, ResponseBytes int64
	How                         How
	// ResetCode is RST_STREAM's error code (How == EndReset).
	ResetCode uint32
	// GenAI is the model call the stream carried; nil when it was not one
	// (or its bodies were not what the API sends).
	GenAI *model.GenAI
}

// Stats counts what a Conn could not read or kept from growing.
type Stats struct {
	// Frames is the frames read.
	Frames uint64
	// Resyncs counts the times the framing was found again (a connection
	// joined mid-way, or bytes lost); Skipped the bytes passed over to
	// find it.
	Resyncs, Skipped uint64
	// Undecoded counts header blocks not decoded (no HPACK state).
	Undecoded uint64
	// HPACKErrors counts header blocks that did not decode (the
	// direction's HPACK state is lost from then on).
	HPACKErrors uint64
	// Evicted counts streams given up to bound memory; HintsDropped
	// hints for streams never seen, dropped the same way.
	Evicted, HintsDropped uint64
	// Malformed counts frames whose fields contradict their length.
	Malformed uint64
}

// Options configures a Conn.
type Options struct {
	// GenAI recognises model calls and says what their Exchanges keep;
	// nil: the defaults.
	GenAI *genai.Config
	// Strings interns the GenAI values; nil: one per Conn.
	Strings *genai.Strings
	// MaxStreams bounds the streams followed at once (0: DefaultMaxStreams).
	MaxStreams int
}

// Bounds.
const (
	// DefaultMaxStreams: Go's server allows 250 concurrent streams, most
	// servers 100; a client rarely has more open on one connection.
	DefaultMaxStreams = 256
	// maxHints bounds hints waiting for their stream.
	maxHints = 64
	// maxTableSize bounds an HPACK dynamic table, whatever SETTINGS says.
	maxTableSize = 64 << 10
	// maxString bounds one header name or value HPACK decodes.
	maxString = 16 << 10
	// maxResyncFrame is the longest frame accepted as a resynchronisation
	// point (the default SETTINGS_MAX_FRAME_SIZE), so that it and the
	// header confirming it fit in the bytes kept meanwhile.
	maxResyncFrame = 16 << 10
	maxResyncBuf   = maxResyncFrame + 2*frameHeaderLen
	// maxFrame is the longest frame believed once the framing was
	// found: the SETTINGS_MAX_FRAME_SIZE Go's client and server
	// advertise (the protocol allows up to 16 MiB, rarely asked for).
	maxFrame = 1 << 20
	// maxTail bounds the last bytes of a body kept after a gap.
	maxTail = 4 << 10
	// recentClosed is how many ended stream IDs are remembered, so that a
	// late frame does not open them again.
	recentClosed = 32
	// maxFreeExchanges bounds the exchanges kept for reuse.
	maxFreeExchanges = 2
)

// Preface is what an HTTP/2 client sends first.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Conn follows one HTTP/2 connection.
type Conn struct {
	opts    Options
	sides   [2]side
	streams map[uint32]*stream
	hints   map[uint32]hint
	closed  [recentClosed]uint32
	nclosed int
	seq     uint64
	stats   Stats
	// decided: the client direction's first bytes told whether the
	// connection was seen from its preface (fromStart).
	decided, fromStart bool
	free               []*genai.Exchange
	out                []*Stream
}

type hint struct{ method, path string }

// stream is a Stream being followed.
type stream struct {
	Stream
	seq                 uint64
	x                   *genai.Exchange
	reqEnded, headFinal bool
	reqCut, respCut     bool
	done                bool // handed out
	fed                 bool // response bytes went to the exchange in order
	// gap: a direction's body lost bytes in its middle (Gap); its last
	// bytes since are kept in tail, read as the body's tail at its end.
	gap  [2]bool
	tail [2][]byte
}

// NewConn returns a Conn following a new connection.
func NewConn(o Options) *Conn {
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.Strings == nil {
		o.Strings = genai.NewStrings()
	}
	c := &Conn{opts: o, streams: map[uint32]*stream{}}
	for d := range c.sides {
		c.sides[d].c, c.sides[d].dir = c, Dir(d)
	}
	return c
}

// Stats is what c counted so far.
func (c *Conn) Stats() Stats { return c.stats }

// FromStart says whether the connection was seen from its client preface
// (then its header blocks are decoded).
func (c *Conn) FromStart() bool { return c.decided && c.fromStart }

// Feed reads bytes that went d's way at t, and appends to out the streams
// they ended.
func (c *Conn) Feed(out []*Stream, d Dir, t time.Time, p []byte) []*Stream {
	if d > ToClient {
		return out
	}
	c.out = out
	c.sides[d].feed(t, p)
	out, c.out = c.out, nil
	return out
}

// Lost says that bytes going d's way were not captured: the framing is
// found again from the next bytes, the direction's header blocks are no
// longer decoded, and the streams open have that direction marked cut.
func (c *Conn) Lost(d Dir) {
	if d > ToClient {
		return
	}
	s := &c.sides[d]
	if s.state == stStart {
		// Nothing seen yet: the first bytes tell.
		return
	}
	s.lose()
	for _, st := range c.streams {
		if d == ToServer {
			st.reqCut = true
		} else {
			st.respCut = true
		}
	}
}

// Gap says that n bytes going d's way were not captured, between the
// bytes fed before and after (a probe copied only the first and last bytes
// of a long write or read). When they fall inside the payload of one DATA
// frame (or a header block's), the framing is kept: the stream's body
// continues after a gap, its last bytes read as the body's tail when it
// ends (a model call's request names its model after its messages). Else
// it is as Lost.
func (c *Conn) Gap(d Dir, n int) {
	if d > ToClient || n <= 0 {
		return
	}
	if !c.sides[d].gap(n) {
		c.Lost(d)
	}
}

// Hint tells the method and path of the request on stream id, for a
// connection whose header blocks are not decoded (a probe on the client
// read them from its request). A hint for a stream not seen yet waits for
// it (a few, the oldest dropped first).
func (c *Conn) Hint(id uint32, method, path string) {
	if st, ok := c.streams[id]; ok {
		c.name(st, method, path)
		return
	}
	if c.isClosed(id) {
		return
	}
	if c.hints == nil {
		c.hints = map[uint32]hint{}
	}
	if len(c.hints) >= maxHints {
		// Stream IDs only grow: the lowest waited longest.
		low := ^uint32(0)
		for k := range c.hints {
			low = min(low, k)
		}
		delete(c.hints, low)
		c.stats.HintsDropped++
	}
	c.hints[id] = hint{method, path}
}

// Close ends the connection at t: the streams still open end (EndClosed)
// and are appended to out.
func (c *Conn) Close(out []*Stream, t time.Time) []*Stream {
	c.out = out
	for _, st := range c.sorted() {
		c.finish(st, EndClosed, t)
	}
	c.hints = nil
	out, c.out = c.out, nil
	return out
}

// sorted is the open streams, oldest first.
func (c *Conn) sorted() []*stream {
	all := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		all = append(all, st)
	}
	for i := 1; i < len(all); i++ {
		for j := i; j > 0 && all[j].seq < all[j-1].seq; j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
	return all
}

// name gives st its method and path (a hint, or decoded), and makes it a
// model call when they are one's.
func (c *Conn) name(st *stream, method, path string) {
	if method != "" {
		st.Method = method
	}
	if path != "" {
		st.Path = path
	}
	if st.x != nil {
		return
	}
	api, ok := c.opts.GenAI.Recognize(st.Method, st.Path)
	if !ok {
		return
	}
	if n := len(c.free); n > 0 {
		st.x, c.free = c.free[n-1], c.free[:n-1]
	} else {
		st.x = &genai.Exchange{}
	}
	st.x.Reset(api, c.opts.GenAI.Options(c.opts.Strings))
	if st.RequestBytes > 0 {
		// Request DATA went by before the stream was known for one.
		st.reqCut = true
	}
	if st.ResponseBytes > 0 {
		st.respCut = true
	}
}

// open finds stream id, or starts following it: a frame that can open a
// stream (HEADERS, or on a connection joined mid-way DATA) for an ID not
// ended already. nil when it is not followed.
func (c *Conn) open(id uint32, t time.Time, create bool) *stream {
	if st, ok := c.streams[id]; ok {
		return st
	}
	if !create || id == 0 || c.isClosed(id) {
		return nil
	}
	if len(c.streams) >= c.opts.MaxStreams {
		c.evict(t)
	}
	c.seq++
	st := &stream{seq: c.seq}
	st.ID, st.Start = id, t
	c.streams[id] = st
	if h, ok := c.hints[id]; ok {
		delete(c.hints, id)
		c.name(st, h.method, h.path)
	}
	return st
}

// evict gives up the oldest stream.
func (c *Conn) evict(t time.Time) {
	var old *stream
	for _, st := range c.streams {
		if old == nil || st.seq < old.seq {
			old = st
		}
	}
	if old != nil {
		c.stats.Evicted++
		c.finish(old, EndEvicted, t)
	}
}

func (c *Conn) isClosed(id uint32) bool {
	for i := range min(c.nclosed, recentClosed) {
		if c.closed[i] == id {
			return true
		}
	}
	return false
}

// finish ends st as how says at t and hands it out.
func (c *Conn) finish(st *stream, how How, t time.Time) {
	if st.done {
		return
	}
	st.done = true
	delete(c.streams, st.ID)
	c.closed[c.nclosed%recentClosed] = st.ID
	c.nclosed++
	for d := range c.sides {
		// A frame of it may be half read on either side (it was
		// evicted meanwhile): the rest of that frame is not its.
		if c.sides[d].block == st {
			c.sides[d].block = nil
		}
		if c.sides[d].st == st {
			c.sides[d].st = nil
		}
	}
	st.How = how
	if st.End.IsZero() {
		st.End = t
	}
	if x := st.x; x != nil {
		st.x = nil
		c.readTails(st, x)
		if st.reqCut || !st.reqEnded {
			x.MarkCut(model.GenAICutRequest)
		}
		if st.respCut {
			x.MarkCut(model.GenAICutResponse)
		}
		end := model.GenAIEndUnknown
		switch how {
		case EndStream:
			end = model.GenAIEndFraming
		case EndReset, EndGoAway, EndClosed:
			end = model.GenAIEndClosed
		}
		if st.respCut && end == model.GenAIEndClosed {
			end = model.GenAIEndUnknown
		}
		g := &model.GenAI{}
		if x.Finish(g, end) {
			st.GenAI = g
		}
		if len(c.free) < maxFreeExchanges {
			c.free = append(c.free, x)
		}
	}
	out := st.Stream
	c.out = append(c.out, &out)
}

// headers takes one decoded header field of a block going d's way.
func (c *Conn) field(d Dir, st *stream, f hpack.HeaderField) {
	if st == nil {
		return
	}
	if d == ToServer {
		switch f.Name {
		case ":method":
			st.Method = f.Value
		case ":path":
			st.Path = f.Value
		case ":authority":
			st.Authority = f.Value
		case "host":
			if st.Authority == "" {
				st.Authority = f.Value
			}
		}
		return
	}
	if st.headFinal {
		return // trailers
	}
	switch f.Name {
	case ":status":
		st.Status = atoi(f.Value)
	case "content-type":
		st.ContentType = f.Value
	case "content-encoding":
		st.ContentEncoding = f.Value
	}
}

// blockEnd settles a header block going d's way on st, decoded or not.
func (c *Conn) blockEnd(d Dir, st *stream, decoded bool) {
	if st == nil {
		return
	}
	if d == ToServer {
		if decoded && !st.Decoded && st.Method != "" {
			st.Decoded = true
			c.name(st, "", "")
		}
		return
	}
	if st.headFinal || !decoded || st.Status < 200 {
		// An informational head (1xx) is followed by the final one.
		return
	}
	st.headFinal = true
	if st.x != nil {
		st.x.ResponseHead(st.Status, st.ContentType, st.ContentEncoding)
	}
}

// data takes DATA payload going d's way on st.
func (c *Conn) data(d Dir, st *stream, t time.Time, p []byte) {
	if st == nil || len(p) == 0 {
		return
	}
	if st.gap[d] {
		if d == ToServer {
			st.RequestBytes += int64(len(p))
		} else {
			st.ResponseBytes += int64(len(p))
			st.End = t
		}
		if st.x != nil {
			if len(p) >= maxTail {
				p = p[len(p)-maxTail:]
			}
			if drop := len(st.tail[d]) + len(p) - maxTail; drop > 0 {
				st.tail[d] = append(st.tail[d][:0], st.tail[d][drop:]...)
			}
			st.tail[d] = append(st.tail[d], p...)
		}
		return
	}
	if d == ToServer {
		st.RequestBytes += int64(len(p))
		if st.x != nil && !st.reqCut {
			st.x.RequestBody(p)
		}
		return
	}
	st.ResponseBytes += int64(len(p))
	st.End = t
	if st.x != nil && !st.respCut {
		st.fed = true
		st.x.ResponseBody(t, p)
	}
}

// dataGap takes n bytes of DATA payload going d's way on st that were
// not captured: what follows is the body's tail.
func (c *Conn) dataGap(d Dir, st *stream, n uint32, t time.Time) {
	if st == nil || n == 0 {
		return
	}
	st.gap[d] = true
	st.tail[d] = st.tail[d][:0]
	if d == ToServer {
		st.RequestBytes += int64(n)
	} else {
		st.ResponseBytes += int64(n)
		st.End = t
	}
}

// readTails gives x the bodies' last bytes seen after a gap.
func (c *Conn) readTails(st *stream, x *genai.Exchange) {
	if st.gap[ToServer] && !st.reqCut {
		x.RequestTail(st.tail[ToServer])
	}
	if st.gap[ToClient] && !st.respCut {
		if !st.headFinal && !st.fed {
			// Nothing but the tail was seen of the response, not
			// even its head: its shape is guessed from the tail.
			x.ResponseHead(st.Status, tailType(st.tail[ToClient]), "")
		}
		x.ResponseTail(st.tail[ToClient])
	}
	st.tail = [2][]byte{}
}

// tailType is the content type a response body's last bytes look like:
// server-sent events, newline-delimited JSON, or one JSON document.
func tailType(p []byte) string {
	switch {
	case bytes.Contains(p, []byte("data:")) || bytes.Contains(p, []byte("event:")):
		return "text/event-stream"
	case bytes.Contains(p, []byte("}\n{")):
		return "application/x-ndjson"
	}
	return "application/json"
}

// endStream takes an END_STREAM going d's way on st at t.
func (c *Conn) endStream(d Dir, st *stream, t time.Time) {
	if st == nil {
		return
	}
	if d == ToServer {
		st.reqEnded = true
		return
	}
	st.End = t
	c.finish(st, EndStream, t)
}

// goAway takes the server's GOAWAY: streams above last are not processed.
func (c *Conn) goAway(last uint32, t time.Time) {
	for _, st := range c.sorted() {
		if st.ID > last {
			c.finish(st, EndGoAway, t)
		}
	}
}

// atoi reads a status code; 0 when it is not one.
func atoi(s string) int {
	if len(s) != 3 {
		return 0
	}
	n := 0
	for i := range 3 {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
		n = n*10 + int(s[i]-'0')
	}
	return n
}
