package gobin

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// The symbol table of a large service holds over 100,000 names, of which
// the tracer uses three (runtime.text, runtime.pclntab, runtime.epclntab)
// and the itabs. So the table is never loaded: each question scans it in
// the file, the answers are kept, and the itabs get a compact index whose
// names are read from the file only when asked for.

// symbolNames are the symbols looked up together on the first scan, because
// the pcln table reader asks for them one after the other.
var symbolNames = []string{"runtime.text", "runtime.pclntab", "runtime.epclntab"}

// symbol is a looked-up symbol: its address, or absent.
type symbol struct {
	addr uint64
	ok   bool
}

const elf64SymSize = 24

// scanSymbols calls fn for every defined, named symbol of .symtab, in
// table order, with its name (valid during the call only), value, and the
// offset of its name in the string table, until fn returns false.
func (b *Binary) scanSymbols(fn func(name []byte, value uint64, nameOff uint32) bool) error {
	symtab := b.elf.Section(".symtab")
	if symtab == nil {
		return elf.ErrNoSymbols
	}
	if int(symtab.Link) >= len(b.elf.Sections) {
		return fmt.Errorf("section .symtab links to no string table")
	}
	syms, err := mapSection(b.file, symtab)
	if err != nil {
		return err
	}
	defer syms.close()
	strs, err := mapSection(b.file, b.elf.Sections[symtab.Link])
	if err != nil {
		return err
	}
	defer strs.close()
	// Entry 0 is the null symbol.
	for off := elf64SymSize; off+elf64SymSize <= len(syms.data); off += elf64SymSize {
		if off%(dropEvery*elf64SymSize) == 0 {
			syms.dropResident()
			strs.dropResident()
		}
		e := syms.data[off : off+elf64SymSize]
		nameOff := binary.LittleEndian.Uint32(e[0:])
		shndx := elf.SectionIndex(binary.LittleEndian.Uint16(e[6:]))
		if nameOff == 0 || shndx == elf.SHN_UNDEF || int(nameOff) >= len(strs.data) {
			continue
		}
		name := strs.data[nameOff:]
		if end := bytes.IndexByte(name, 0); end >= 0 {
			name = name[:end]
		}
		if !fn(name, binary.LittleEndian.Uint64(e[8:]), nameOff) {
			break
		}
	}
	return nil
}

// Symbol returns the virtual address of a symbol from .symtab, for data the
// pcln table does not describe such as itabs
// ("go:itab.*net/http.response,net/http.ResponseWriter"). It reports false
// when the binary is stripped or has no such symbol.
func (b *Binary) Symbol(name string) (uint64, bool) {
	if !b.HasSymtab {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.symbolLocked(name)
}

// symbolLocked is Symbol with b.mu held.
func (b *Binary) symbolLocked(name string) (uint64, bool) {
	if !b.HasSymtab {
		return 0, false
	}
	if s, ok := b.symbols[name]; ok {
		return s.addr, s.ok
	}
	want := []string{name}
	for _, n := range symbolNames {
		if _, done := b.symbols[n]; !done && n != name {
			want = append(want, n)
		}
	}
	found := map[string]uint64{}
	err := b.scanSymbols(func(sym []byte, value uint64, _ uint32) bool {
		for _, w := range want {
			if _, dup := found[w]; !dup && string(sym) == w {
				found[w] = value
			}
		}
		return len(found) < len(want)
	})
	if err != nil {
		return 0, false
	}
	for _, w := range want {
		addr, ok := found[w]
		b.symbols[w] = symbol{addr: addr, ok: ok}
	}
	s := b.symbols[name]
	return s.addr, s.ok
}

// itabIndex locates the itab symbols by address: their names stay in the
// file's string table.
type itabIndex struct {
	addrs    []uint64 // sorted
	nameOffs []uint32 // in the string table, for addrs[i]
	strtab   uint64   // file offset of the string table
	names    map[uint64]string
}

// IndexItabs indexes the binary's itab symbols now, so that ItabType later
// answers without scanning the symbol table. An agent calls it while it
// attaches, when scanning costs nothing extra; otherwise the first ItabType
// does it.
func (b *Binary) IndexItabs() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.indexItabsLocked()
}

func (b *Binary) indexItabsLocked() *itabIndex {
	if b.itabs != nil || !b.HasSymtab {
		return b.itabs
	}
	x := &itabIndex{names: map[uint64]string{}}
	symtab := b.elf.Section(".symtab")
	if int(symtab.Link) < len(b.elf.Sections) {
		x.strtab = b.elf.Sections[symtab.Link].Offset
	}
	type entry struct {
		addr uint64
		off  uint32
	}
	var entries []entry
	_ = b.scanSymbols(func(name []byte, value uint64, nameOff uint32) bool {
		if bytes.HasPrefix(name, []byte("go:itab.")) {
			entries = append(entries, entry{value, nameOff})
		}
		return true
	})
	// Sorted by address; of two symbols at one address the first in the
	// table wins (a stable sort keeps table order).
	slices.SortStableFunc(entries, func(a, b entry) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	entries = slices.CompactFunc(entries, func(a, b entry) bool { return a.addr == b.addr })
	x.addrs = make([]uint64, len(entries))
	x.nameOffs = make([]uint32, len(entries))
	for i, e := range entries {
		x.addrs[i], x.nameOffs[i] = e.addr, e.off
	}
	b.itabs = x
	return x
}

// ItabType names the dynamic type of an interface value from its itab's
// address in the binary: "*net.OpError" for go:itab.*net.OpError,error. It
// reports false when the binary has no symbol table or no itab there.
func (b *Binary) ItabType(addr uint64) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x := b.indexItabsLocked()
	if x == nil {
		return "", false
	}
	if name, ok := x.names[addr]; ok {
		return name, name != ""
	}
	i, found := slices.BinarySearch(x.addrs, addr)
	name := ""
	if found {
		name = b.itabName(x.strtab + uint64(x.nameOffs[i]))
	}
	x.names[addr] = name
	return name, name != ""
}

// itabName reads the itab symbol name at file offset off and returns its
// type: "go:itab.<type>,<interface>". The interface never has a comma
// outside brackets, the type may (generics), so it is cut at the last.
func (b *Binary) itabName(off uint64) string {
	var sym []byte
	buf := make([]byte, 256)
	for {
		n, err := b.file.ReadAt(buf, int64(off)+int64(len(sym)))
		if end := bytes.IndexByte(buf[:n], 0); end >= 0 {
			sym = append(sym, buf[:end]...)
			break
		}
		sym = append(sym, buf[:n]...)
		if err != nil || n == 0 {
			return ""
		}
	}
	rest, ok := strings.CutPrefix(string(sym), "go:itab.")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, ','); i > 0 {
		return rest[:i]
	}
	return ""
}
