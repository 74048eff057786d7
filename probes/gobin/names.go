package gobin

import (
	"bytes"
	"encoding/binary"
)

// pcHeader's offset of the compilation-unit table, which follows the table
// of function names.
const pcHeaderCuOffset = 40

// FuncNames calls fn with the name of every function of the binary, from
// the pcln table (which stripping keeps): to find the instantiations of a
// generic function, which Go names after their type arguments' shapes
// ("main.Map[go.shape.int]").
func (b *Binary) FuncNames(fn func(name string)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pcln == nil {
		idx, err := b.loadPcln()
		if err != nil {
			return err
		}
		b.pcln = idx
	}
	b.pcln.names(fn)
	return nil
}

// InlinedOnly tells whether the binary knows name only as a function
// inlined into others: the pcln table's inline trees name every function
// inlined somewhere (tracebacks show them), in the same table of names as
// the functions with code of their own, so a name that is in that table
// but belongs to no function has no code of its own to probe. False for a
// function with code, and for tables before Go 1.18.
func (b *Binary) InlinedOnly(name string) (bool, error) {
	if _, err := b.Func(name); err == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pcln == nil {
		idx, err := b.loadPcln()
		if err != nil {
			return false, err
		}
		b.pcln = idx
	}
	x := b.pcln
	if x.legacy != nil {
		return false, nil
	}
	tab := x.funcnametab
	// The table ends where the compilation units' begins.
	data := x.tab.data
	nameOff := binary.LittleEndian.Uint64(data[pcHeaderFuncnameOffset:])
	cuOff := binary.LittleEndian.Uint64(data[pcHeaderCuOffset:])
	if cuOff > nameOff && cuOff-nameOff <= uint64(len(tab)) {
		tab = tab[:cuOff-nameOff]
	}
	want := make([]byte, 0, len(name)+2)
	want = append(append(append(want, 0), name...), 0)
	return bytes.HasPrefix(tab, want[1:]) || bytes.Contains(tab, want), nil
}
