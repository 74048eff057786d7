package gobin

import (
	"errors"
	"slices"
	"testing"
)

// The frames the probes read at deferred calls are found in the code of
// the standard library functions the fixture links, the same in every
// build variant (stripping changes no code), and each closure holds the
// address of the slot its function reloads its error from. A function
// without defers has no such frame.
func TestResultSlots(t *testing.T) {
	cases := []struct {
		fn, deferred string
		results      int
		captured     int // result word whose slot the closure holds, -1 none
	}{
		{"net/http.(*Transport).roundTrip", "net/http.(*Transport).roundTrip.func1", 3, 1},
		{"database/sql.(*DB).execDC", "database/sql.(*DB).execDC.func1", 4, 2},
		{"database/sql.(*Stmt).ExecContext", "", 4, -1},
		{"database/sql.(*Stmt).QueryContext", "", 3, -1},
	}
	want := map[string][]int64{}
	for _, v := range variants[:4] {
		t.Run(v.name, func(t *testing.T) {
			b := openFixture(t, v)
			for _, c := range cases {
				f, err := b.Func(c.fn)
				if err != nil {
					t.Fatal(err)
				}
				slots, err := b.ResultSlots(f, c.results)
				if err != nil {
					t.Fatalf("%s: %v", c.fn, err)
				}
				// Results are word-sized slots of the frame, the words
				// of one interface next to each other.
				for i, s := range slots {
					if s <= 0 || s%8 != 0 || slices.Index(slots, s) != i {
						t.Errorf("%s: slots %#x", c.fn, slots)
					}
				}
				if c.results == 4 && slots[1] != slots[0]+8 || slots[len(slots)-1] != slots[len(slots)-2]+8 {
					t.Errorf("%s: the words of an interface result are not adjacent: %#x", c.fn, slots)
				}
				if w, ok := want[c.fn]; ok && !slices.Equal(w, slots) {
					t.Errorf("%s: slots %#x, another build %#x", c.fn, slots, w)
				}
				want[c.fn] = slots
				if c.captured < 0 {
					continue
				}
				d, err := b.Func(c.deferred)
				if err != nil {
					t.Fatal(err)
				}
				k, err := b.ClosureSlot(f, d, slots[c.captured])
				if err != nil {
					t.Fatalf("%s: %v", c.deferred, err)
				}
				if k <= 0 || k%8 != 0 {
					t.Errorf("%s: the closure holds &err at %#x", c.deferred, k)
				}
				// Any other slot is in no closure.
				if _, err := b.ClosureSlot(f, d, slots[c.captured]+0x1000); !errors.Is(err, ErrNoFrame) {
					t.Errorf("%s: a slot it does not capture: %v, want ErrNoFrame", c.deferred, err)
				}
			}
			f, err := b.Func(fixtureFunc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.ResultSlots(f, 2); !errors.Is(err, ErrNoFrame) {
				t.Errorf("%s defers nothing: %v, want ErrNoFrame", fixtureFunc, err)
			}
		})
	}
}
