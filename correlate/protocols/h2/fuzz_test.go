package h2

import (
	"encoding/binary"
	"testing"
	"time"
)

// encodeOps writes segments as the fuzz input: per segment a direction
// byte (bit 0; bit 1 asks for a Lost first, or with bit 7 a Gap of the
// segment's length plus one, bit 2 for a hint), a 2-byte
// length, the bytes.
func encodeOps(segs []seg) []byte {
	var b []byte
	for _, s := range segs {
		for len(s.b) > 0 {
			n := min(len(s.b), 0xffff)
			b = append(b, byte(s.dir))
			b = binary.BigEndian.AppendUint16(b, uint16(n))
			b = append(b, s.b[:n]...)
			s.b = s.b[n:]
		}
	}
	return b
}

// FuzzConn feeds a connection arbitrary pieces both ways, with losses and
// hints: it never panics, and what it holds stays within its bounds.
func FuzzConn(f *testing.F) {
	w, _ := connSegments()
	f.Add(encodeOps(w.segs))
	mid := encodeOps(w.segs)
	f.Add(mid[len(mid)/3:])
	f.Add([]byte{0, 0, 24, 'P', 'R', 'I'})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := NewConn(Options{MaxStreams: 16})
		t0 := time.Unix(1, 0)
		var out []*Stream
		for i := 0; len(in) >= 3; i++ {
			op := in[0]
			n := min(int(binary.BigEndian.Uint16(in[1:3])), len(in)-3)
			p := in[3 : 3+n]
			in = in[3+n:]
			d := Dir(op & 1)
			if op&2 != 0 {
				if op&0x80 != 0 {
					c.Gap(d, n+1)
				} else {
					c.Lost(d)
				}
			}
			if op&4 != 0 {
				c.Hint(uint32(op>>3)*2+1, "POST", "/v1/chat/completions")
			}
			out = c.Feed(out[:0], d, t0.Add(time.Duration(i)*time.Millisecond), p)
			for _, s := range out {
				if s.ID == 0 || s.How == 0 {
					t.Fatalf("stream %+v", s)
				}
			}
			if len(c.streams) > 16 || len(c.hints) > maxHints {
				t.Fatalf("%d streams, %d hints", len(c.streams), len(c.hints))
			}
			for _, st := range c.streams {
				if len(st.tail[0]) > maxTail || len(st.tail[1]) > maxTail {
					t.Fatalf("stream %d keeps tails of %d and %d bytes", st.ID, len(st.tail[0]), len(st.tail[1]))
				}
			}
			for d := range c.sides {
				if len(c.sides[d].buf) > maxResyncBuf {
					t.Fatalf("side %d keeps %d bytes", d, len(c.sides[d].buf))
				}
			}
		}
		c.Close(out[:0], t0)
		if len(c.streams) != 0 {
			t.Fatalf("%d streams after Close", len(c.streams))
		}
	})
}
