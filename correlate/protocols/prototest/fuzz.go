package prototest

import (
	"math"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
)

// Exchanges feeds a new parser what a database client's connection gives
// the kernel path for a write of w and a read of r split in two at split
// (modulo its length), twice — what the first exchange leaves behind (bytes
// to skip, a lost reader, unanswered commands) meets the second — and then
// the close. Each record holds at most Capture bytes, with a Len that may
// claim extra bytes past them; reads are flagged ready as given. It fails t
// on a span with no name or no database system, or that ends before it
// starts, and returns every span.
func Exchanges(t *testing.T, newParser protocols.New, w, r []byte, ready bool, wExtra, rExtra uint32, split uint16) []*model.Span {
	t.Helper()
	p := NewProcess()
	env := &Env{P: p, C: protocols.Conn{Local: Client, Remote: Server, Source: model.SourceKernel}}
	wire := &Wire{Parser: newParser(env), Env: env, TID: 9}
	at := 0
	seg := func(dir protocols.Dir, b []byte, extra uint32) *protocols.Segment {
		at++
		n := uint64(len(b)) + uint64(extra)
		return &protocols.Segment{Dir: dir, TID: 9, Ready: ready && dir == protocols.Read,
			Time: time.Unix(3000, int64(at)*int64(time.Millisecond)),
			Len:  uint32(min(n, math.MaxUint32)), Data: b[:min(len(b), Capture)]}
	}
	var all []*model.Span
	check := func(spans []*model.Span) {
		for _, s := range spans {
			if s.Name == "" || s.DB == nil || s.DB.System == "" {
				t.Fatalf("span name %q exchange %+v", s.Name, s.DB)
			}
			if s.End.Before(s.Start) {
				t.Fatalf("span %q ends %v before it starts %v", s.Name, s.End, s.Start)
			}
		}
		all = append(all, spans...)
	}
	cut := int(split) % (len(r) + 1)
	for range 2 {
		for _, s := range []*protocols.Segment{
			seg(protocols.Write, w, wExtra),
			seg(protocols.Read, r[:cut], rExtra),
			seg(protocols.Read, r[cut:], 0),
		} {
			// The probe sends nothing for a read or write of no bytes.
			if s.Len > 0 {
				check(wire.Send(s))
			}
		}
	}
	check(wire.Close())
	if len(p.Serving) != 0 {
		t.Fatalf("%d threads serving", len(p.Serving))
	}
	return all
}
