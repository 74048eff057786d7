package h2

import (
	"encoding/binary"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Frame types (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

const (
	frameHeaderLen     = 9
	settingsTableSize  = 0x1
	defaultTableSize   = 4096
	smallPayloadLength = 8
)

// sideState is where a direction's parse is.
type sideState uint8

const (
	stStart  sideState = iota // no byte yet
	stFramed                  // at a known place in the framing
	stResync                  // looking for the framing
)

// frameHeader is a frame's 9-byte header.
type frameHeader struct {
	length uint32
	typ    uint8
	flags  uint8
	id     uint32
}

func parseHeader(b []byte) frameHeader {
	return frameHeader{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    b[3],
		flags:  b[4],
		id:     binary.BigEndian.Uint32(b[5:9]) &^ (1 << 31),
	}
}

// plausible says whether b (9 bytes) looks like a frame header that a
// client or server of HTTP/2 sends: a known type with only its flags, a
// length its type allows and at most maxLen, a stream ID where its type
// needs one (a client's: odd) and none where it does not, and the reserved
// bit clear. It is how the framing is found mid-connection (maxLen
// maxResyncFrame, so that a candidate and its confirmation fit in the
// bytes kept), and how a place found that way is checked afterwards
// (maxLen maxFrame: frames longer than the default are common then, such
// as an embeddings response in one DATA frame).
func plausible(b []byte, maxLen uint32) (frameHeader, bool) {
	if b[5]&0x80 != 0 {
		return frameHeader{}, false
	}
	h := parseHeader(b)
	if h.length > maxLen {
		return h, false
	}
	stream := h.id != 0 && h.id&1 == 1
	switch h.typ {
	case frameData:
		return h, stream && h.flags&^(flagEndStream|flagPadded) == 0
	case frameHeaders:
		return h, stream && h.length > 0 && h.flags&^(flagEndStream|flagEndHeaders|flagPadded|flagPriority) == 0
	case framePriority:
		return h, stream && h.flags == 0 && h.length == 5
	case frameRSTStream:
		return h, stream && h.flags == 0 && h.length == 4
	case frameSettings:
		return h, h.id == 0 && h.flags&^flagAck == 0 && h.length%6 == 0 && (h.flags == 0 || h.length == 0)
	case framePing:
		return h, h.id == 0 && h.flags&^flagAck == 0 && h.length == 8
	case frameGoAway:
		return h, h.id == 0 && h.flags == 0 && h.length >= 8
	case frameWindowUpdate:
		return h, (h.id == 0 || stream) && h.flags == 0 && h.length == 4
	case frameContinuation:
		return h, stream && h.flags&^flagEndHeaders == 0 && h.length > 0
	}
	return h, false
}

// side is one direction's parse.
type side struct {
	c     *Conn
	dir   Dir
	state sideState

	pre int // preface bytes matched (ToServer, at the start)

	hdr  [frameHeaderLen]byte
	nhdr int
	f    frameHeader
	// Of the current frame's payload: off bytes were read; for DATA and
	// HEADERS the content is [lo, hi) once the pad length is known
	// (padKnown).
	off      uint32
	lo, hi   uint32
	padKnown bool
	small    [smallPayloadLength]byte
	st       *stream // the frame's stream, when followed

	// HPACK: dec decodes this direction's blocks while hpackOK.
	dec     *hpack.Decoder
	hpackOK bool
	// block is the stream whose header block is open (CONTINUATION
	// expected); inBlock even when that stream is not followed.
	block        *stream
	inBlock      bool
	blockDecoded bool
	blockEnd     bool // the block's HEADERS had END_STREAM

	buf []byte // the bytes kept while resynchronising
	// bufSeg: buf starts where a segment (a write, a read) started.
	bufSeg bool
	// resynced: the framing was searched for (not followed from the
	// start), so every header read is checked for plausibility.
	resynced bool
	t        time.Time
}

// feed reads p, which went this way at t.
func (s *side) feed(t time.Time, p []byte) {
	s.t = t
	whole := true // p is a whole segment
	for len(p) > 0 {
		switch s.state {
		case stStart:
			n := len(p)
			p = s.start(p)
			whole = whole && len(p) == n
		case stFramed:
			p = s.framed(p)
			whole = false
		case stResync:
			if len(s.buf)+len(p) > maxResyncBuf {
				// Keep the newest bytes: a plausible header and its
				// confirmation fit in maxResyncBuf.
				keep := max(0, maxResyncBuf-len(p))
				drop := len(s.buf) - min(len(s.buf), keep)
				s.c.stats.Skipped += uint64(drop)
				if drop > 0 {
					s.bufSeg = false
				}
				s.buf = append(s.buf[:0], s.buf[drop:]...)
				if len(p) > maxResyncBuf {
					s.c.stats.Skipped += uint64(len(p) - maxResyncBuf)
					p = p[len(p)-maxResyncBuf:]
					whole = false
				}
			}
			if len(s.buf) == 0 {
				s.bufSeg = whole
			}
			s.buf = append(s.buf, p...)
			p = s.resync()
		}
	}
}

// start reads a direction's first bytes: the client's preface says the
// connection is seen from its start; else the framing must be found.
func (s *side) start(p []byte) []byte {
	c := s.c
	if s.dir == ToClient {
		if c.decided && !c.fromStart {
			s.toResync()
			return p
		}
		// The server's first frame is its SETTINGS: from there it is
		// framed (decoded only if the client's preface is seen too).
		s.state = stFramed
		s.initHPACK()
		return p
	}
	for s.pre < len(Preface) && len(p) > 0 {
		if p[0] != Preface[s.pre] {
			// Not a preface: a connection joined mid-way. What matched
			// is kept for the search of the framing.
			c.decided, c.fromStart = true, false
			s.buf = append(s.buf[:0], Preface[:s.pre]...)
			s.toResync()
			if srv := &c.sides[ToClient]; srv.state == stFramed {
				// The server's bytes read so far were read as a
				// start: their framing is found again.
				srv.lose()
			}
			return p
		}
		s.pre++
		p = p[1:]
	}
	if s.pre == len(Preface) {
		c.decided, c.fromStart = true, true
		s.state = stFramed
		s.initHPACK()
	}
	return p
}

func (s *side) initHPACK() {
	if s.dec == nil {
		s.dec = hpack.NewDecoder(defaultTableSize, s.emit)
		s.dec.SetMaxStringLength(maxString)
	}
	s.hpackOK = true
}

// toResync starts looking for the framing, HPACK given up.
func (s *side) toResync() {
	s.state = stResync
	s.resynced = true
	s.hpackOK = false
	s.nhdr = 0
	s.inBlock, s.block = false, nil
}

// lose gives up the place in the framing.
func (s *side) lose() {
	s.buf = s.buf[:0]
	s.toResync()
}

// resync looks in buf for a plausible frame header confirmed by the one
// after it; found, what follows it is read framed (returned).
func (s *side) resync() []byte {
	b := s.buf
	for i := 0; i+frameHeaderLen <= len(b); i++ {
		h, ok := plausible(b[i:i+frameHeaderLen], maxResyncFrame)
		if !ok {
			continue
		}
		next := i + frameHeaderLen + int(h.length)
		if i == 0 && s.bufSeg && next == len(b) {
			// A frame that is exactly what a write or read carried:
			// writers and readers of HTTP/2 work in whole frames
			// more often than not, so it needs no confirmation (a
			// stream's last frame would otherwise wait for the
			// connection's next one). A wrong guess is caught at
			// the next implausible header.
			return s.synced(0)
		}
		if next+frameHeaderLen > len(b) {
			// Wait for the confirmation.
			s.c.stats.Skipped += uint64(i)
			s.bufSeg = s.bufSeg && i == 0
			s.buf = append(s.buf[:0], b[i:]...)
			return nil
		}
		if _, ok := plausible(b[next:next+frameHeaderLen], maxFrame); !ok {
			continue
		}
		return s.synced(i)
	}
	// Keep the last bytes, which may start a header.
	keep := min(len(b), frameHeaderLen-1)
	if keep < len(b) {
		s.c.stats.Skipped += uint64(len(b) - keep)
		s.buf = append(s.buf[:0], b[len(b)-keep:]...)
		s.bufSeg = false
	}
	return nil
}

// synced takes the framing as found at buf[i] and returns the bytes from
// there, to be read framed.
func (s *side) synced(i int) []byte {
	s.c.stats.Skipped += uint64(i)
	s.c.stats.Resyncs++
	s.state = stFramed
	s.nhdr = 0
	rest := append([]byte(nil), s.buf[i:]...)
	s.buf, s.bufSeg = s.buf[:0], false
	return rest
}

// framed reads p at a known place in the framing and returns what is left
// when the place is lost.
func (s *side) framed(p []byte) []byte {
	for len(p) > 0 {
		if s.nhdr < frameHeaderLen {
			n := copy(s.hdr[s.nhdr:], p)
			s.nhdr += n
			p = p[n:]
			if s.nhdr < frameHeaderLen {
				return nil
			}
			if s.resynced {
				// The framing was searched for: it might have been
				// found at a wrong place; an implausible header says
				// so.
				if _, ok := plausible(s.hdr[:], maxFrame); !ok {
					s.c.stats.Skipped += frameHeaderLen
					s.buf = append(s.buf[:0], s.hdr[1:]...)
					s.bufSeg = false
					s.toResync()
					return p
				}
			}
			s.begin(parseHeader(s.hdr[:]))
			if s.f.length == 0 {
				s.end()
			}
			continue
		}
		n := min(uint32(len(p)), s.f.length-s.off)
		s.payload(p[:n])
		p = p[n:]
		if s.off == s.f.length {
			s.end()
		}
	}
	return nil
}

// begin starts a frame.
func (s *side) begin(h frameHeader) {
	c := s.c
	c.stats.Frames++
	s.f, s.off, s.padKnown = h, 0, false
	s.lo, s.hi = 0, h.length
	s.st = nil
	if s.inBlock && h.typ != frameContinuation {
		// A header block left open: whatever it was, it is over.
		s.closeBlock()
	}
	switch h.typ {
	case frameHeaders:
		s.st = c.open(h.id, s.t, true)
		if s.st != nil && s.dir == ToClient && s.st.ResponseStart.IsZero() {
			s.st.ResponseStart = s.t
		}
		s.inBlock, s.block, s.blockEnd = true, s.st, h.flags&flagEndStream != 0
		s.blockDecoded = s.hpackOK && c.fromStart
		if !s.blockDecoded {
			// Not decoded, the table goes out of step for good.
			c.stats.Undecoded++
			s.hpackOK = false
		}
		if h.flags&(flagPadded|flagPriority) == 0 {
			s.padKnown = true
		}
	case frameData:
		// On a connection joined mid-way a stream's first frame seen
		// may be DATA: its body is then read from the middle, as a
		// body's tail.
		_, known := c.streams[h.id]
		s.st = c.open(h.id, s.t, !c.fromStart)
		if s.st != nil && !known {
			s.st.gap[s.dir] = true
		}
		if h.flags&flagPadded == 0 {
			s.padKnown = true
		}
	case frameContinuation:
		if !s.inBlock {
			s.padKnown = true
			s.lo = s.hi // nothing to decode
			break
		}
		s.padKnown = true
		s.st = s.block
	case frameRSTStream:
		s.st = c.open(h.id, s.t, false)
	default:
		s.padKnown = true
	}
}

// payload reads the next bytes of the current frame's payload.
func (s *side) payload(p []byte) {
	start := s.off
	s.off += uint32(len(p))
	switch s.f.typ {
	case frameData, frameHeaders, frameContinuation:
	default:
		// Control frames: their first bytes are what matters, but
		// SETTINGS, whose entries are read as they come.
		for i, b := range p {
			at := start + uint32(i)
			if s.f.typ == frameSettings {
				s.small[at%6] = b
				if at%6 == 5 {
					s.setting(s.small[:6])
				}
				continue
			}
			if at < smallPayloadLength {
				s.small[at] = b
			}
		}
		return
	}
	if !s.padKnown {
		// The pad length (PADDED) and the priority fields (PRIORITY)
		// come first.
		pre := uint32(0)
		if s.f.flags&flagPadded != 0 {
			pre = 1
		}
		if s.f.typ == frameHeaders && s.f.flags&flagPriority != 0 {
			pre += 5
		}
		if pre > s.f.length {
			s.c.stats.Malformed++
		}
		if start == 0 && s.f.flags&flagPadded != 0 {
			pad := uint32(p[0])
			if pre+pad > s.f.length {
				s.c.stats.Malformed++
				pad = s.f.length - min(pre, s.f.length)
			}
			s.hi = s.f.length - pad
		}
		s.lo = min(pre, s.hi)
		s.padKnown = true
	}
	// The content's part of p.
	lo, hi := max(start, s.lo), min(s.off, s.hi)
	if lo >= hi {
		return
	}
	content := p[lo-start : hi-start]
	switch s.f.typ {
	case frameData:
		s.c.data(s.dir, s.st, s.t, content)
	default:
		if s.blockDecoded {
			if _, err := s.dec.Write(content); err != nil {
				s.hpackError()
			}
		}
	}
}

// gap passes over n bytes of the current frame's payload that were not
// captured; false when they are not all inside one DATA or header block
// frame's payload after its pad length.
func (s *side) gap(n int) bool {
	if s.state != stFramed || s.nhdr < frameHeaderLen || !s.padKnown || uint64(n) > uint64(s.f.length-s.off) {
		return false
	}
	switch s.f.typ {
	case frameData, frameHeaders, frameContinuation:
	default:
		return false
	}
	start := s.off
	s.off += uint32(n)
	if lo, hi := max(start, s.lo), min(s.off, s.hi); lo < hi {
		if s.f.typ == frameData {
			s.c.dataGap(s.dir, s.st, hi-lo, s.t)
		} else if s.blockDecoded {
			// Part of a header block is lost: so is the table.
			s.hpackError()
		}
	}
	if s.off == s.f.length {
		s.end()
	}
	return true
}

// end ends the current frame.
func (s *side) end() {
	c := s.c
	h := s.f
	switch h.typ {
	case frameData:
		if h.flags&flagEndStream != 0 {
			c.endStream(s.dir, s.st, s.t)
		}
	case frameHeaders, frameContinuation:
		if s.inBlock && h.flags&flagEndHeaders != 0 {
			s.closeBlock()
		}
	case frameRSTStream:
		if s.st != nil && h.length >= 4 {
			s.st.ResetCode = binary.BigEndian.Uint32(s.small[:4])
			c.finish(s.st, EndReset, s.t)
		}
	case frameGoAway:
		if s.dir == ToClient && h.length >= 8 {
			c.goAway(binary.BigEndian.Uint32(s.small[:4])&^(1<<31), s.t)
		}
	}
	s.nhdr, s.st = 0, nil
}

// closeBlock ends the open header block.
func (s *side) closeBlock() {
	st, decoded := s.block, s.blockDecoded
	if decoded {
		if err := s.dec.Close(); err != nil {
			s.hpackError()
			decoded = false
		}
	}
	s.inBlock, s.block, s.blockDecoded = false, nil, false
	if st == nil {
		return
	}
	s.c.blockEnd(s.dir, st, decoded)
	if s.blockEnd {
		s.blockEnd = false
		s.c.endStream(s.dir, st, s.t)
	}
}

// emit takes a decoded field of the open block.
func (s *side) emit(f hpack.HeaderField) {
	if s.blockDecoded {
		s.c.field(s.dir, s.block, f)
	}
}

// hpackError gives up this direction's HPACK: its table is unknown now.
func (s *side) hpackError() {
	if !s.hpackOK {
		return
	}
	s.c.stats.HPACKErrors++
	s.hpackOK, s.blockDecoded = false, false
}

// setting applies one SETTINGS entry this direction sent: a header table
// size bounds the table of the other direction's encoder, so its decoder.
func (s *side) setting(e []byte) {
	if s.f.flags&flagAck != 0 || binary.BigEndian.Uint16(e) != settingsTableSize {
		return
	}
	v := min(binary.BigEndian.Uint32(e[2:]), maxTableSize)
	other := &s.c.sides[1-s.dir]
	if other.dec == nil {
		other.dec = hpack.NewDecoder(defaultTableSize, other.emit)
		other.dec.SetMaxStringLength(maxString)
	}
	other.dec.SetAllowedMaxDynamicTableSize(v)
}
