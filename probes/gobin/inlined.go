package gobin

import (
	"bufio"
	"fmt"
	"io"
)

// More DWARF tags and attributes, for InlinedCalls.
const (
	tagSubprogram        = 0x2e
	tagInlinedSubroutine = 0x1d
	atInline             = 0x20
	atAbstractOrigin     = 0x31
)

// InlinedCalls counts, for each function of names, the call sites the
// compiler inlined it at: the DWARF entries of its inlined copies, which
// point at the function's abstract entry. A function with code of its own
// that is also inlined somewhere runs those calls without its entry or RET
// instructions, so a probe on them misses those calls. The walk streams
// .debug_info once, keeping only the counts. The error wraps ErrNoDWARF for
// a binary without DWARF, where the question has no answer.
func (b *Binary) InlinedCalls(names []string) (map[string]int, error) {
	if !b.HasDWARF {
		return nil, ErrNoDWARF
	}
	wanted := map[string]bool{}
	for _, n := range names {
		wanted[n] = true
	}
	ar, err := b.debugSection("abbrev")
	if err != nil {
		return nil, err
	}
	abbrevData, err := io.ReadAll(ar)
	if err != nil {
		return nil, err
	}
	info, err := b.debugSection("info")
	if err != nil {
		return nil, err
	}
	r := &dieReader{r: bufio.NewReaderSize(info, 64<<10)}
	tables := map[uint64]map[uint64]*abbrev{}
	abstract := map[uint64]string{} // entry offset -> wanted name
	sites := map[uint64]int{}       // abstract origin -> inlined copies
	for {
		if _, err := r.r.Peek(1); err == io.EOF {
			break
		}
		start := r.pos
		u, end, abbrevOff, err := r.unitHeader()
		if err != nil {
			return nil, err
		}
		tab, ok := tables[abbrevOff]
		if !ok {
			if tab, err = parseAbbrevs(abbrevData, abbrevOff); err != nil {
				return nil, err
			}
			tables[abbrevOff] = tab
		}
		for r.pos < end && r.err == nil {
			at := r.pos
			code := r.uleb()
			if code == 0 {
				continue
			}
			a, ok := tab[code]
			if !ok {
				return nil, fmt.Errorf("%w: unknown abbreviation %d", errLean, code)
			}
			var name string
			inline := false
			for _, attr := range a.attrs {
				switch {
				case a.tag == tagSubprogram && attr.attr == atName && attr.form == dwFormString:
					name = string(r.cstring())
				case a.tag == tagSubprogram && attr.attr == atInline:
					inline = true
					if err := r.skipForm(attr.form, u); err != nil {
						return nil, err
					}
				case a.tag == tagInlinedSubroutine && attr.attr == atAbstractOrigin:
					if ref, ok := r.ref(attr.form, u, start); ok {
						sites[ref]++
					} else if err := r.skipForm(attr.form, u); err != nil {
						return nil, err
					}
				default:
					if err := r.skipForm(attr.form, u); err != nil {
						return nil, err
					}
				}
			}
			if inline && wanted[name] {
				abstract[at] = name
			}
		}
		if r.pos > end {
			return nil, fmt.Errorf("%w: a unit's entries run past its end", errLean)
		}
		r.skip(end - r.pos)
		if r.err != nil {
			return nil, r.err
		}
	}
	out := map[string]int{}
	for off, name := range abstract {
		out[name] += sites[off]
	}
	return out, nil
}

// ref reads a reference attribute as an offset in .debug_info, for the
// forms Go writes; false, reading nothing, for another.
func (r *dieReader) ref(form uint64, u unit, unitStart uint64) (uint64, bool) {
	switch form {
	case dwFormRefAddr:
		if u.version <= 2 {
			if u.addrSize == 8 {
				return r.u64(), true
			}
			return uint64(r.u32()), true
		}
		return r.offset(u), true
	case dwFormRef4:
		return unitStart + uint64(r.u32()), true
	case dwFormRef8:
		return unitStart + r.u64(), true
	case dwFormRefUdata:
		return unitStart + r.uleb(), true
	}
	return 0, false
}
