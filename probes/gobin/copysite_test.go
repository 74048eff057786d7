package gobin

import (
	"errors"
	"testing"
)

// The crypto/tls read site is found in the fixture's code, the same in
// every build variant: the one CALL runtime.memmove of the bytes.Reader.Read
// inlined into (*Conn).Read, emulated, with the receiver's spill slot above
// the frame and the read index the count is added to at the offset DWARF
// gives c.input.i. A function without such a copy has none.
func TestCopySite(t *testing.T) {
	const fn = "crypto/tls.(*Conn).Read"
	var want *CopySite
	for _, v := range variants[:4] {
		t.Run(v.name, func(t *testing.T) {
			b := openFixture(t, v)
			f, err := b.Func(fn)
			if err != nil {
				t.Fatal(err)
			}
			site, err := b.CopySite(f)
			if err != nil {
				t.Fatal(err)
			}
			start, _ := b.FileOffset(f.Addr)
			end, _ := b.FileOffset(f.End - 1)
			if site.Offset <= start || site.Offset > end || site.ReceiverSlot <= 0 || site.IndexField <= 0 {
				t.Fatalf("site %+v in %#x-%#x", site, start, end)
			}
			inst, err := b.ProbedInstruction(site.Offset)
			if err != nil || !inst.Emulated || inst.Text != "CALL" {
				t.Errorf("the site's instruction %+v is not an emulated CALL (%v)", inst, err)
			}
			if !v.stripped {
				if err := b.LoadStructs("crypto/tls.Conn", "bytes.Reader"); err != nil {
					t.Fatal(err)
				}
				input, err1 := b.FieldOffset("crypto/tls.Conn", "input")
				i, err2 := b.FieldOffset("bytes.Reader", "i")
				if err := errors.Join(err1, err2); err != nil {
					t.Fatal(err)
				}
				if site.IndexField != int64(input+i) {
					t.Errorf("index field %#x, DWARF says c.input.i is at %#x", site.IndexField, input+i)
				}
			}
			if want != nil && (want.ReceiverSlot != site.ReceiverSlot || want.IndexField != site.IndexField) {
				t.Errorf("site %+v, another build %+v", site, *want)
			}
			want = &site
			g, err := b.Func(fixtureFunc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.CopySite(g); !errors.Is(err, ErrNoFrame) {
				t.Errorf("%s: %v, want ErrNoFrame", fixtureFunc, err)
			}
		})
	}
}

// What the HTTP/2 side of a Go model call needs of a binary besides the
// TLS read site, checked on the fixture in every build variant: an
// emulated entry on (*http2clientStream).encodeAndWriteHeaders (the stream
// has its ID there; the request is the round trip's shallow copy, joined
// by its URL), and, from DWARF, the stream's ID and connection and the
// connection's net.Conn (the *tls.Conn the TLS probes see).
func TestH2StreamSite(t *testing.T) {
	const fn = "net/http.(*http2clientStream).encodeAndWriteHeaders"
	for _, v := range variants[:4] {
		t.Run(v.name, func(t *testing.T) {
			b := openFixture(t, v)
			f, err := b.Func(fn)
			if err != nil {
				t.Fatal(err)
			}
			off, err := b.EntryOffset(f)
			if err != nil {
				t.Fatal(err)
			}
			if inst, err := b.ProbedInstruction(off); err != nil || !inst.Emulated {
				t.Errorf("%s's entry %+v is not emulated (%v)", fn, inst, err)
			}
			if v.stripped {
				return
			}
			for _, f := range [][2]string{
				{"net/http.http2clientStream", "ID"},
				{"net/http.http2clientStream", "cc"},
				{"net/http.http2ClientConn", "tconn"},
			} {
				if _, err := b.FieldOffset(f[0], f[1]); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
