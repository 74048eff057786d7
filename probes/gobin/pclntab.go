package gobin

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// pcHeader magics (runtime/symtab.go). Since Go 1.18 function entries are
// stored relative to runtime.text, so decoding them needs that address.
const (
	pclnMagic118 = 0xfffffff0
	pclnMagic120 = 0xfffffff1
)

// Byte offsets of pcHeader fields used below, identical for the Go 1.18 and
// Go 1.20 formats on 64-bit targets.
const (
	pcHeaderPtrSize        = 7
	pcHeaderNfunc          = 8
	pcHeaderFuncnameOffset = 32
	pcHeaderPclnOffset     = 64
	pcHeaderSize           = 72
)

// Word indexes of runtime.moduledata fields, unchanged since Go 1.16:
// pcHeader, then six slices (funcnametab, cutab, filetab, pctab, pclntable,
// ftab) of three words each, findfunctab, minpc, maxpc, text, etext.
const (
	mdPcHeader    = 0
	mdFuncnametab = 1
	mdFtab        = 16
	mdMinPC       = 20
	mdText        = 22
	mdWords       = 24
)

// pclnIndex finds functions by name in the pcln table without copying it:
// the table stays in the file (mapped while the index lives), and the index
// holds one word per function, a hash of its name and its number, sorted.
// A name is compared only with the few functions whose hash it shares.
// gosym.Table would instead allocate a Func and a name string for each of
// the 100,000 or more functions of a large service.
type pclnIndex struct {
	tab         *mapped
	text        uint64 // what function entries are relative to
	nfunc       int
	ftab        []byte // nfunc+1 (entry offset, func offset) pairs
	funcs       []byte // where the func offsets point
	funcnametab []byte
	keys        []uint64 // name hash << 32 | function number, sorted

	// legacy serves the formats before Go 1.18, whose entries gosym
	// decodes; nil for the current formats.
	legacy map[string]*gosym.Func
}

func (b *Binary) loadPcln() (*pclnIndex, error) {
	addr, tab, err := b.pclntab()
	if err != nil {
		return nil, fmt.Errorf("reading pcln table of %s: %w", b.Path, err)
	}
	idx, err := b.indexPcln(addr, tab)
	if err != nil {
		tab.close()
		return nil, fmt.Errorf("reading pcln table of %s: %w", b.Path, err)
	}
	return idx, nil
}

func (b *Binary) indexPcln(addr uint64, tab *mapped) (*pclnIndex, error) {
	data := tab.data
	text, err := b.textStart(addr, data)
	if err != nil {
		return nil, err
	}
	if len(data) < pcHeaderSize {
		return nil, errors.New("pcln table too short")
	}
	if magic := binary.LittleEndian.Uint32(data); magic != pclnMagic118 && magic != pclnMagic120 {
		return b.indexLegacy(tab, text)
	}
	idx := &pclnIndex{tab: tab, text: text}
	nfunc := binary.LittleEndian.Uint64(data[pcHeaderNfunc:])
	nameOff := binary.LittleEndian.Uint64(data[pcHeaderFuncnameOffset:])
	pclnOff := binary.LittleEndian.Uint64(data[pcHeaderPclnOffset:])
	size := uint64(len(data))
	if nfunc == 0 || nfunc > size/8 || nameOff >= size || pclnOff+(nfunc+1)*8 > size {
		return nil, fmt.Errorf("pcln table header out of bounds (%d functions)", nfunc)
	}
	idx.nfunc = int(nfunc)
	idx.funcnametab = data[nameOff:]
	idx.funcs = data[pclnOff:]
	idx.ftab = data[pclnOff : pclnOff+(nfunc+1)*8]
	// A wrong text base would silently shift every address, so check that
	// the decoded functions land in executable code before trusting them.
	if !b.executable(idx.entry(0)) || !b.executable(idx.entry(idx.nfunc-1)) {
		return nil, fmt.Errorf("functions decode outside executable code (text base %#x)", text)
	}
	idx.keys = make([]uint64, idx.nfunc)
	defer tab.dropResident()
	for i := range idx.nfunc {
		if i%dropEvery == dropEvery-1 {
			tab.dropResident()
		}
		name, ok := idx.name(i)
		if !ok {
			return nil, fmt.Errorf("function %d has its name out of bounds", i)
		}
		idx.keys[i] = uint64(nameHash(name))<<32 | uint64(i)
	}
	slices.Sort(idx.keys)
	return idx, nil
}

// dropEvery is how many functions or symbols a scan reads between two
// calls of dropResident: a few hundred kilobytes of pages.
const dropEvery = 8192

// indexLegacy indexes a table in a format before Go 1.18 with gosym, from
// a heap copy (gosym keeps references into it).
func (b *Binary) indexLegacy(tab *mapped, text uint64) (*pclnIndex, error) {
	data := slices.Clone(tab.data)
	tab.close()
	t, err := gosym.NewTable(nil, gosym.NewLineTable(data, text))
	if err != nil {
		return nil, err
	}
	if len(t.Funcs) == 0 {
		return nil, errors.New("no functions")
	}
	first, last := t.Funcs[0], t.Funcs[len(t.Funcs)-1]
	if !b.executable(first.Entry) || !b.executable(last.Entry) {
		return nil, fmt.Errorf("functions decode outside executable code (text base %#x)", text)
	}
	idx := &pclnIndex{legacy: make(map[string]*gosym.Func, len(t.Funcs))}
	for i := range t.Funcs {
		fn := &t.Funcs[i]
		if _, dup := idx.legacy[fn.Name]; !dup {
			idx.legacy[fn.Name] = fn
		}
	}
	return idx, nil
}

// nameHash is the 32-bit FNV-1a hash of name.
func nameHash[T string | []byte](name T) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return h
}

// entry is the address of function i; entry(nfunc) is the end of the last.
func (x *pclnIndex) entry(i int) uint64 {
	return x.text + uint64(binary.LittleEndian.Uint32(x.ftab[i*8:]))
}

// name is the name of function i, pointing into the table.
func (x *pclnIndex) name(i int) ([]byte, bool) {
	funcOff := uint64(binary.LittleEndian.Uint32(x.ftab[i*8+4:]))
	if funcOff+8 > uint64(len(x.funcs)) {
		return nil, false
	}
	// runtime._func: entryOff uint32, nameOff int32, ...
	off := int32(binary.LittleEndian.Uint32(x.funcs[funcOff+4:]))
	if off < 0 || int(off) >= len(x.funcnametab) {
		return nil, false
	}
	name := x.funcnametab[off:]
	end := bytes.IndexByte(name, 0)
	if end < 0 {
		return nil, false
	}
	return name[:end], true
}

// lookup finds the first function named name: its entry and end.
func (x *pclnIndex) lookup(name string) (entry, end uint64, ok bool) {
	if x.legacy != nil {
		fn, ok := x.legacy[name]
		if !ok {
			return 0, 0, false
		}
		return fn.Entry, fn.End, true
	}
	h := uint64(nameHash(name))
	i, _ := slices.BinarySearch(x.keys, h<<32)
	for ; i < len(x.keys) && x.keys[i]>>32 == h; i++ {
		n := int(uint32(x.keys[i]))
		if got, _ := x.name(n); string(got) == name {
			return x.entry(n), x.entry(n + 1), true
		}
	}
	return 0, 0, false
}

// names calls fn with the name of every function, in table order (tests).
func (x *pclnIndex) names(fn func(string)) {
	if x.legacy != nil {
		for name := range x.legacy {
			fn(name)
		}
		return
	}
	for i := range x.nfunc {
		name, _ := x.name(i)
		fn(string(name))
	}
}

// close unmaps the table.
func (x *pclnIndex) close() {
	x.tab.close()
	x.keys = nil
}

// pclntab returns the address of the runtime's function table and the
// table, mapped from the file. The linker keeps it in its own section for
// internal and external linking, PIE or not, stripped or not; the symbols
// are a fallback for layouts where it was merged into another section.
func (b *Binary) pclntab() (uint64, *mapped, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		s := b.elf.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		m, err := mapSection(b.file, s)
		if err != nil {
			return 0, nil, fmt.Errorf("reading section %s: %w", name, err)
		}
		return s.Addr, m, nil
	}
	start, ok1 := b.symbolLocked("runtime.pclntab")
	end, ok2 := b.symbolLocked("runtime.epclntab")
	if !ok1 || !ok2 || end <= start {
		return 0, nil, errors.New("no .gopclntab section and no runtime.pclntab symbol")
	}
	off, err := b.FileOffset(start)
	if err != nil {
		return 0, nil, err
	}
	m, err := mapRange(b.file, off, end-start)
	if err != nil {
		return 0, nil, fmt.Errorf("reading runtime.pclntab: %w", err)
	}
	return start, m, nil
}

// textStart returns runtime.text, the base that Go 1.18+ function entries
// are relative to. It equals the start of .text only with internal linking:
// an external linker puts C start-up code first. The symbol answers when
// present; a stripped binary still has runtime.firstmoduledata, whose text
// field the runtime itself relies on, so it is found by the pointer it holds
// to the pcln table and checked against that table before use.
func (b *Binary) textStart(pclnAddr uint64, pcln []byte) (uint64, error) {
	if len(pcln) < pcHeaderSize {
		return 0, errors.New("pcln table too short")
	}
	magic := binary.LittleEndian.Uint32(pcln)
	if magic != pclnMagic118 && magic != pclnMagic120 {
		// Older formats store absolute entry addresses and ignore the base.
		if s := b.elf.Section(".text"); s != nil {
			return s.Addr, nil
		}
		return 0, nil
	}
	if pcln[pcHeaderPtrSize] != 8 {
		return 0, fmt.Errorf("pcln table pointer size %d, want 8", pcln[pcHeaderPtrSize])
	}
	if text, ok := b.symbolLocked("runtime.text"); ok {
		return text, nil
	}
	funcnameOff := binary.LittleEndian.Uint64(pcln[pcHeaderFuncnameOffset:])
	pclnOff := binary.LittleEndian.Uint64(pcln[pcHeaderPclnOffset:])
	if pclnOff+4 > uint64(len(pcln)) {
		return 0, errors.New("pcln table header points past its end")
	}
	firstEntryOff := uint64(binary.LittleEndian.Uint32(pcln[pclnOff:]))

	// Go 1.26 puts the module data in its own section; earlier releases keep
	// it among the other initialised data.
	for _, name := range []string{".go.module", ".noptrdata", ".data.rel.ro", ".data"} {
		s := b.elf.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		m, err := mapSection(b.file, s)
		if err != nil {
			return 0, fmt.Errorf("reading section %s: %w", name, err)
		}
		text, ok := b.moduleDataText(m.data, pclnAddr, funcnameOff, pclnOff, firstEntryOff)
		m.close()
		if ok {
			return text, nil
		}
	}
	return 0, errors.New("cannot find runtime.text: no symbol table and no module data pointing at the pcln table")
}

// moduleDataText looks in data for runtime.moduledata pointing at the pcln
// table at pclnAddr, and returns its text field.
func (b *Binary) moduleDataText(data []byte, pclnAddr, funcnameOff, pclnOff, firstEntryOff uint64) (uint64, bool) {
	for i := 0; i+mdWords*8 <= len(data); i += 8 {
		word := func(n int) uint64 { return binary.LittleEndian.Uint64(data[i+n*8:]) }
		if word(mdPcHeader) != pclnAddr ||
			word(mdFuncnametab) != pclnAddr+funcnameOff ||
			word(mdFtab) != pclnAddr+pclnOff {
			continue
		}
		text := word(mdText)
		if word(mdMinPC) != text+firstEntryOff || !b.executable(text) {
			continue
		}
		return text, true
	}
	return 0, false
}

// executable reports whether vaddr lies in a loadable, executable segment.
func (b *Binary) executable(vaddr uint64) bool {
	for _, p := range b.elf.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && vaddr >= p.Vaddr && vaddr-p.Vaddr < p.Filesz {
			return true
		}
	}
	return false
}
