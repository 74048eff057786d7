package gobin

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
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

func (b *Binary) loadPcln() (*pclnIndex, error) {
	addr, data, err := b.pclntab()
	if err != nil {
		return nil, fmt.Errorf("reading pcln table of %s: %w", b.Path, err)
	}
	text, err := b.textStart(addr, data)
	if err != nil {
		return nil, fmt.Errorf("reading pcln table of %s: %w", b.Path, err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text))
	if err != nil {
		return nil, fmt.Errorf("reading pcln table of %s: %w", b.Path, err)
	}
	if len(tab.Funcs) == 0 {
		return nil, fmt.Errorf("reading pcln table of %s: no functions", b.Path)
	}
	// A wrong text base would silently shift every address, so check that
	// the decoded functions land in executable code before trusting them.
	first, last := tab.Funcs[0], tab.Funcs[len(tab.Funcs)-1]
	if !b.executable(first.Entry) || !b.executable(last.Entry) {
		return nil, fmt.Errorf("reading pcln table of %s: functions decode outside executable code (text base %#x)", b.Path, text)
	}
	idx := &pclnIndex{table: tab, byName: make(map[string]*gosym.Func, len(tab.Funcs))}
	for i := range tab.Funcs {
		fn := &tab.Funcs[i]
		if _, dup := idx.byName[fn.Name]; !dup {
			idx.byName[fn.Name] = fn
		}
	}
	return idx, nil
}

// pclntab returns the address and contents of the runtime's function table.
// The linker keeps it in its own section for internal and external linking,
// PIE or not, stripped or not; the symbols are a fallback for layouts where
// it was merged into another section.
func (b *Binary) pclntab() (uint64, []byte, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		s := b.elf.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return 0, nil, fmt.Errorf("reading section %s: %w", name, err)
		}
		return s.Addr, data, nil
	}
	start, ok1 := b.Symbol("runtime.pclntab")
	end, ok2 := b.Symbol("runtime.epclntab")
	if !ok1 || !ok2 || end <= start {
		return 0, nil, errors.New("no .gopclntab section and no runtime.pclntab symbol")
	}
	off, err := b.FileOffset(start)
	if err != nil {
		return 0, nil, err
	}
	data := make([]byte, end-start)
	if _, err := b.file.ReadAt(data, int64(off)); err != nil {
		return 0, nil, fmt.Errorf("reading runtime.pclntab: %w", err)
	}
	return start, data, nil
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
	if text, ok := b.Symbol("runtime.text"); ok {
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
		data, err := s.Data()
		if err != nil {
			return 0, fmt.Errorf("reading section %s: %w", name, err)
		}
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
			return text, nil
		}
	}
	return 0, errors.New("cannot find runtime.text: no symbol table and no module data pointing at the pcln table")
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
