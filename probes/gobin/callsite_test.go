package gobin

import (
	"errors"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// The net/http client's read site is found in the fixture's code, the same
// in every build variant: a conditional jump inside (*persistConn).Read
// right after its indirect call, with p's pointer and pc in distinct spill
// slots above the frame. A function without an indirect call has none.
func TestCallResultSite(t *testing.T) {
	const fn = "net/http.(*persistConn).Read"
	var want *CallResult
	for _, v := range variants[:4] {
		t.Run(v.name, func(t *testing.T) {
			b := openFixture(t, v)
			f, err := b.Func(fn)
			if err != nil {
				t.Fatal(err)
			}
			site, err := b.CallResultSite(f, x86asm.RBX, x86asm.RAX)
			if err != nil {
				t.Fatal(err)
			}
			start, _ := b.FileOffset(f.Addr)
			end, _ := b.FileOffset(f.End - 1)
			if site.Offset <= start || site.Offset > end || len(site.Slots) != 2 || site.Slots[0] == site.Slots[1] ||
				site.Slots[0] <= 0 || site.Slots[1] <= 0 {
				t.Fatalf("site %+v in %#x-%#x", site, start, end)
			}
			inst, err := b.ProbedInstruction(site.Offset)
			if err != nil || !inst.Emulated {
				t.Errorf("the site's instruction %+v is not emulated (%v)", inst, err)
			}
			if want != nil && (want.Slots[0] != site.Slots[0] || want.Slots[1] != site.Slots[1]) {
				t.Errorf("slots %#x, another build %#x", site.Slots, want.Slots)
			}
			want = &site
			g, err := b.Func(fixtureFunc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.CallResultSite(g, x86asm.RAX); !errors.Is(err, ErrNoFrame) {
				t.Errorf("%s: %v, want ErrNoFrame", fixtureFunc, err)
			}
		})
	}
}
