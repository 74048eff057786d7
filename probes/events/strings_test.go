package events

import "testing"

func carray(s string, size int) []int8 {
	b := make([]int8, size)
	for i := range len(s) {
		b[i] = int8(s[i])
	}
	return b
}

// CStrings gives what CString gives, field by field, in one allocation.
func TestCStrings(t *testing.T) {
	arrays := [][]int8{carray("GET", 8), carray("", 8), carray("/a/\xffb", 8), carray("host:80", 8), carray("12345678", 8)}
	lens := []uint16{3, 0, 5, 7, 200} // the last one past its array
	var got [5]string
	fields := make([]CField, len(arrays))
	for i := range arrays {
		fields[i] = CField{arrays[i], lens[i], &got[i]}
	}
	allocs := testing.AllocsPerRun(10, func() { CStrings(fields...) })
	for i := range arrays {
		if want := CString(arrays[i], lens[i]); got[i] != want {
			t.Errorf("field %d: %q, want %q", i, got[i], want)
		}
	}
	// One for the strings, one for the path that is not UTF-8.
	if allocs != 2 {
		t.Errorf("%v allocations, want 2", allocs)
	}
	var empty string = "x"
	CStrings(CField{arrays[1], 0, &empty})
	if empty != "" {
		t.Errorf("empty field gave %q", empty)
	}
}
