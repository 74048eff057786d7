package gobin

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Struct offsets come from DWARF, but a probe reads a few dozen fields of a
// dozen structs, and a large service's DWARF describes tens of thousands of
// types in hundreds of megabytes of entries once decoded. The walk here
// looks only for the structs asked for, and only where the Go linker puts
// every type: the compilation unit of package runtime. It decompresses
// .debug_info as a stream and decodes entries in place, keeping nothing of
// what it passes: the memory it needs does not grow with the binary.
// Anything it does not understand (a form it does not know, a type name
// that is not an inline string, a binary without a runtime unit) sends the
// question to debug/dwarf instead, which reads everything.

// errLean is wrapped by the lean walk for DWARF it leaves to debug/dwarf.
var errLean = errors.New("DWARF not handled by the lean reader")

// DWARF tags, attributes and forms the walk uses (DWARF 5, section 7).
const (
	tagCompileUnit = 0x11
	tagStructType  = 0x13
	tagMember      = 0x0d

	atName           = 0x03
	atDataMemberLoc  = 0x38
	formImplicitCons = 0x21
)

// LoadStructs looks up the struct types named in DWARF, in one walk, so
// that FieldOffset then answers from memory. FieldOffset looks up a struct
// it was not given here on its own, with a walk of its own: callers that
// know the structs they need should name them all here first. It does
// nothing for a binary without DWARF.
func (b *Binary) LoadStructs(names ...string) error {
	if !b.HasDWARF {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loadStructsLocked(names)
}

func (b *Binary) loadStructsLocked(names []string) error {
	wanted := map[string]bool{}
	for _, n := range names {
		if _, done := b.structs[n]; !done && n != "" {
			wanted[n] = true
		}
	}
	if len(wanted) == 0 {
		return nil
	}
	found, err := b.leanStructs(wanted)
	if errors.Is(err, errLean) {
		found, err = b.stdStructs(wanted)
	}
	if err != nil {
		return fmt.Errorf("reading DWARF: %w", err)
	}
	for n := range wanted {
		b.structs[n] = found[n] // nil: not in DWARF
	}
	return nil
}

// FieldOffset returns the byte offset of field within the struct typeName
// (e.g. "net/http.Request", "runtime.g", "internal/poll.FD"), as recorded in
// the binary's DWARF. The error wraps ErrNoDWARF, ErrNoType or ErrNoField so
// callers can tell a stripped binary from a layout change.
func (b *Binary) FieldOffset(typeName, field string) (uint64, error) {
	if !b.HasDWARF {
		return 0, fmt.Errorf("offset of %s.%s in %s: %w", typeName, field, b.Path, ErrNoDWARF)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.loadStructsLocked([]string{typeName}); err != nil {
		return 0, fmt.Errorf("offset of %s.%s in %s: %w", typeName, field, b.Path, err)
	}
	fields := b.structs[typeName]
	if fields == nil {
		return 0, fmt.Errorf("offset of %s.%s in %s: %w: %s", typeName, field, b.Path, ErrNoType, typeName)
	}
	off, ok := fields[field]
	if !ok {
		return 0, fmt.Errorf("offset of %s.%s in %s: %w: %s has no field %s", typeName, field, b.Path, ErrNoField, typeName, field)
	}
	return off, nil
}

// debugSection opens DWARF section name (without its prefix) as a stream,
// decompressed: SHF_COMPRESSED sections (what Go writes since 1.12) or the
// older .zdebug_ ones.
func (b *Binary) debugSection(name string) (io.Reader, error) {
	if s := b.elf.Section(".debug_" + name); s != nil {
		return s.Open(), nil
	}
	s := b.elf.Section(".zdebug_" + name)
	if s == nil {
		return nil, fmt.Errorf("%w: no .debug_%s section", errLean, name)
	}
	r := s.Open()
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:4]) != "ZLIB" {
		return nil, fmt.Errorf("%w: .zdebug_%s is not zlib", errLean, name)
	}
	return zlib.NewReader(r)
}

// abbrev is one abbreviation: a DIE's tag, whether it has children, and
// its attributes' encodings.
type abbrev struct {
	tag      uint64
	children bool
	attrs    []abbrevAttr
}

type abbrevAttr struct {
	attr, form uint64
	implicit   int64
}

// parseAbbrevs decodes the abbreviation table at off in data.
func parseAbbrevs(data []byte, off uint64) (map[uint64]*abbrev, error) {
	if off >= uint64(len(data)) {
		return nil, fmt.Errorf("%w: abbreviation table at %#x past the section", errLean, off)
	}
	r := &dieReader{r: bufio.NewReader(bytes.NewReader(data[off:]))}
	tab := map[uint64]*abbrev{}
	for {
		code := r.uleb()
		if code == 0 || r.err != nil {
			return tab, r.err
		}
		a := &abbrev{tag: r.uleb(), children: r.u8() != 0}
		for {
			at, form := r.uleb(), r.uleb()
			if at == 0 && form == 0 || r.err != nil {
				break
			}
			var imp int64
			if form == formImplicitCons {
				imp = r.sleb()
			}
			a.attrs = append(a.attrs, abbrevAttr{attr: at, form: form, implicit: imp})
		}
		tab[code] = a
	}
}

// unit is what decoding a unit's entries needs from its header.
type unit struct {
	version    uint16
	addrSize   uint64
	offsetSize uint64
}

// leanStructs walks the runtime units of .debug_info for the wanted
// structs.
func (b *Binary) leanStructs(wanted map[string]bool) (map[string]map[string]uint64, error) {
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
	found := map[string]map[string]uint64{}
	runtimeUnits := 0
	for {
		if _, err := r.r.Peek(1); err == io.EOF {
			break
		}
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
		isRuntime, err := r.unitIsRuntime(tab, u)
		if err != nil {
			return nil, err
		}
		if isRuntime {
			runtimeUnits++
			if err := r.collectStructs(tab, u, end, wanted, found); err != nil {
				return nil, err
			}
			if len(found) == len(wanted) {
				return found, nil
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
	if runtimeUnits == 0 {
		return nil, fmt.Errorf("%w: no runtime compilation unit", errLean)
	}
	return found, nil
}

// unitIsRuntime reads a unit's first entry and tells whether it is the
// compilation unit of package runtime. A unit named otherwise than by an
// inline string (C code, named through .debug_str) is not Go's.
func (r *dieReader) unitIsRuntime(tab map[uint64]*abbrev, u unit) (bool, error) {
	code := r.uleb()
	if code == 0 {
		return false, r.err
	}
	a, ok := tab[code]
	if !ok {
		return false, fmt.Errorf("%w: unknown abbreviation %d", errLean, code)
	}
	isRuntime := false
	for _, at := range a.attrs {
		if at.attr == atName && at.form == dwFormString {
			isRuntime = string(r.cstring()) == "runtime"
			continue
		}
		if err := r.skipForm(at.form, u); err != nil {
			return false, err
		}
	}
	return a.tag == tagCompileUnit && isRuntime && a.children, r.err
}

// collectStructs decodes the entries of a unit up to end and records the
// members of every wanted struct not found yet.
func (r *dieReader) collectStructs(tab map[uint64]*abbrev, u unit, end uint64, wanted map[string]bool, found map[string]map[string]uint64) error {
	depth := 1 // inside the unit's entry
	var cur map[string]uint64
	curName, curDepth := "", -1
	for r.pos < end && depth > 0 {
		code := r.uleb()
		if r.err != nil {
			return r.err
		}
		if code == 0 {
			depth--
			if cur != nil && depth == curDepth {
				found[curName] = cur
				cur, curDepth = nil, -1
				if len(found) == len(wanted) {
					return nil
				}
			}
			continue
		}
		a, ok := tab[code]
		if !ok {
			return fmt.Errorf("%w: unknown abbreviation %d", errLean, code)
		}
		switch {
		case a.tag == tagStructType && cur == nil:
			name, err := r.entryName(a, u)
			if err != nil {
				return err
			}
			if _, done := found[string(name)]; a.children && wanted[string(name)] && !done {
				cur, curName, curDepth = map[string]uint64{}, string(name), depth
			}
		case a.tag == tagMember && cur != nil && depth == curDepth+1:
			if err := r.member(a, u, cur); err != nil {
				return err
			}
		default:
			for _, at := range a.attrs {
				if err := r.skipForm(at.form, u); err != nil {
					return err
				}
			}
		}
		if a.children {
			depth++
		}
	}
	return r.err
}

// entryName reads an entry's attributes and returns its name, valid until
// the next read.
func (r *dieReader) entryName(a *abbrev, u unit) ([]byte, error) {
	var name []byte
	for _, at := range a.attrs {
		if at.attr == atName {
			if at.form != dwFormString {
				return nil, fmt.Errorf("%w: a type named with form %#x", errLean, at.form)
			}
			name = append(r.name[:0], r.cstring()...)
			r.name = name
			continue
		}
		if err := r.skipForm(at.form, u); err != nil {
			return nil, err
		}
	}
	return name, r.err
}

// member reads a member entry into fields.
func (r *dieReader) member(a *abbrev, u unit, fields map[string]uint64) error {
	var name string
	var off uint64
	for _, at := range a.attrs {
		switch at.attr {
		case atName:
			if at.form != dwFormString {
				return fmt.Errorf("%w: a member named with form %#x", errLean, at.form)
			}
			name = string(r.cstring())
		case atDataMemberLoc:
			v, err := r.constant(at, u)
			if err != nil {
				return err
			}
			off = v
		default:
			if err := r.skipForm(at.form, u); err != nil {
				return err
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	if _, dup := fields[name]; name != "" && !dup {
		fields[name] = off
	}
	return nil
}

// constant reads a member location: a constant, or a DW_OP_plus_uconst
// expression as older producers wrote it.
func (r *dieReader) constant(at abbrevAttr, u unit) (uint64, error) {
	switch at.form {
	case dwFormData1:
		return uint64(r.u8()), r.err
	case dwFormData2:
		return uint64(r.u16()), r.err
	case dwFormData4:
		return uint64(r.u32()), r.err
	case dwFormData8:
		return r.u64(), r.err
	case dwFormUdata:
		return r.uleb(), r.err
	case dwFormSdata, formImplicitCons:
		v := at.implicit
		if at.form == dwFormSdata {
			v = r.sleb()
		}
		if v < 0 {
			return 0, fmt.Errorf("negative member offset %d", v)
		}
		return uint64(v), r.err
	case dwFormBlock1, dwFormBlock, dwFormExprloc:
		var n uint64
		if at.form == dwFormBlock1 {
			n = uint64(r.u8())
		} else {
			n = r.uleb()
		}
		expr := make([]byte, n)
		r.read(expr)
		if r.err != nil {
			return 0, r.err
		}
		const opPlusUconst = 0x23
		if len(expr) < 2 || expr[0] != opPlusUconst {
			return 0, fmt.Errorf("unsupported member location expression % x", expr)
		}
		off, m := uleb128(expr[1:])
		if m != len(expr)-1 {
			return 0, fmt.Errorf("malformed member location expression % x", expr)
		}
		return off, nil
	}
	return 0, fmt.Errorf("%w: member location of form %#x", errLean, at.form)
}

// DWARF forms (DWARF 5, 7.5.6, and the GNU extensions in use).
const (
	dwFormAddr         = 0x01
	dwFormBlock2       = 0x03
	dwFormBlock4       = 0x04
	dwFormData2        = 0x05
	dwFormData4        = 0x06
	dwFormData8        = 0x07
	dwFormString       = 0x08
	dwFormBlock        = 0x09
	dwFormBlock1       = 0x0a
	dwFormData1        = 0x0b
	dwFormFlag         = 0x0c
	dwFormSdata        = 0x0d
	dwFormStrp         = 0x0e
	dwFormUdata        = 0x0f
	dwFormRefAddr      = 0x10
	dwFormRef1         = 0x11
	dwFormRef2         = 0x12
	dwFormRef4         = 0x13
	dwFormRef8         = 0x14
	dwFormRefUdata     = 0x15
	dwFormIndirect     = 0x16
	dwFormSecOffset    = 0x17
	dwFormExprloc      = 0x18
	dwFormFlagPresent  = 0x19
	dwFormStrx         = 0x1a
	dwFormAddrx        = 0x1b
	dwFormRefSup4      = 0x1c
	dwFormStrpSup      = 0x1d
	dwFormData16       = 0x1e
	dwFormLineStrp     = 0x1f
	dwFormRefSig8      = 0x20
	dwFormLoclistx     = 0x22
	dwFormRnglistx     = 0x23
	dwFormRefSup8      = 0x24
	dwFormStrx1        = 0x25
	dwFormStrx4        = 0x28
	dwFormAddrx1       = 0x29
	dwFormAddrx4       = 0x2c
	dwFormGNUAddrIndex = 0x1f01
	dwFormGNUStrIndex  = 0x1f02
	dwFormGNURefAlt    = 0x1f20
	dwFormGNUStrpAlt   = 0x1f21
)

// skipForm reads past one attribute value of the given form.
func (r *dieReader) skipForm(form uint64, u unit) error {
	switch form {
	case dwFormFlagPresent, formImplicitCons:
	case dwFormData1, dwFormFlag, dwFormRef1:
		r.skip(1)
	case dwFormData2, dwFormRef2:
		r.skip(2)
	case dwFormData4, dwFormRef4, dwFormRefSup4:
		r.skip(4)
	case dwFormData8, dwFormRef8, dwFormRefSig8, dwFormRefSup8:
		r.skip(8)
	case dwFormData16:
		r.skip(16)
	case dwFormAddr:
		r.skip(u.addrSize)
	case dwFormRefAddr:
		if u.version == 2 {
			r.skip(u.addrSize)
		} else {
			r.skip(u.offsetSize)
		}
	case dwFormStrp, dwFormSecOffset, dwFormStrpSup, dwFormLineStrp, dwFormGNURefAlt, dwFormGNUStrpAlt:
		r.skip(u.offsetSize)
	case dwFormUdata, dwFormRefUdata, dwFormStrx, dwFormAddrx, dwFormLoclistx, dwFormRnglistx, dwFormGNUAddrIndex, dwFormGNUStrIndex:
		r.uleb()
	case dwFormSdata:
		r.sleb()
	case dwFormString:
		r.cstring()
	case dwFormBlock1:
		r.skip(uint64(r.u8()))
	case dwFormBlock2:
		r.skip(uint64(r.u16()))
	case dwFormBlock4:
		r.skip(uint64(r.u32()))
	case dwFormBlock, dwFormExprloc:
		r.skip(r.uleb())
	case dwFormIndirect:
		return r.skipForm(r.uleb(), u)
	default:
		switch {
		case form >= dwFormStrx1 && form <= dwFormStrx4:
			r.skip(form - dwFormStrx1 + 1)
		case form >= dwFormAddrx1 && form <= dwFormAddrx4:
			r.skip(form - dwFormAddrx1 + 1)
		default:
			return fmt.Errorf("%w: form %#x", errLean, form)
		}
	}
	return r.err
}

// dieReader decodes a DWARF section from a stream. The first error sticks:
// every later read returns zero.
type dieReader struct {
	r    *bufio.Reader
	pos  uint64
	err  error
	buf  [8]byte
	name []byte // entryName's result, reused
	str  []byte // cstring's result when it spans buffer refills
}

func (r *dieReader) read(p []byte) {
	if r.err != nil {
		clear(p)
		return
	}
	n, err := io.ReadFull(r.r, p)
	r.pos += uint64(n)
	if err != nil {
		r.err = fmt.Errorf("reading DWARF at %#x: %w", r.pos, err)
	}
}

func (r *dieReader) skip(n uint64) {
	if r.err != nil || n == 0 {
		return
	}
	for n > 0 {
		step := int(min(n, 1<<30))
		m, err := r.r.Discard(step)
		r.pos += uint64(m)
		n -= uint64(m)
		if err != nil {
			r.err = fmt.Errorf("reading DWARF at %#x: %w", r.pos, err)
			return
		}
	}
}

func (r *dieReader) u8() uint8 {
	if r.err != nil {
		return 0
	}
	c, err := r.r.ReadByte()
	if err != nil {
		r.err = fmt.Errorf("reading DWARF at %#x: %w", r.pos, err)
		return 0
	}
	r.pos++
	return c
}

func (r *dieReader) u16() uint16 { r.read(r.buf[:2]); return binary.LittleEndian.Uint16(r.buf[:]) }
func (r *dieReader) u32() uint32 { r.read(r.buf[:4]); return binary.LittleEndian.Uint32(r.buf[:]) }
func (r *dieReader) u64() uint64 { r.read(r.buf[:8]); return binary.LittleEndian.Uint64(r.buf[:]) }

func (r *dieReader) offset(u unit) uint64 {
	if u.offsetSize == 8 {
		return r.u64()
	}
	return uint64(r.u32())
}

func (r *dieReader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.u8()
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 || r.err != nil {
			return v
		}
	}
}

func (r *dieReader) sleb() int64 {
	var v int64
	var shift uint
	for {
		c := r.u8()
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 || r.err != nil {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

// cstring reads a NUL-terminated string and returns it without the NUL,
// valid until the next read.
func (r *dieReader) cstring() []byte {
	if r.err != nil {
		return nil
	}
	line, err := r.r.ReadSlice(0)
	r.pos += uint64(len(line))
	if err == nil {
		return line[:len(line)-1]
	}
	// Longer than the buffer: gather the pieces.
	r.str = append(r.str[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = r.r.ReadSlice(0)
		r.pos += uint64(len(line))
		r.str = append(r.str, line...)
	}
	if err != nil {
		r.err = fmt.Errorf("reading DWARF at %#x: %w", r.pos, err)
		return nil
	}
	return r.str[:len(r.str)-1]
}

// stdStructs looks for the wanted structs with debug/dwarf, through every
// unit: for the DWARF the lean walk leaves aside.
func (b *Binary) stdStructs(wanted map[string]bool) (map[string]map[string]uint64, error) {
	d, err := b.elf.DWARF()
	if err != nil {
		return nil, err
	}
	found := map[string]map[string]uint64{}
	r := d.Reader()
	for len(found) < len(wanted) {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType || !e.Children {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if _, dup := found[name]; !wanted[name] || dup {
			r.SkipChildren()
			continue
		}
		fields, err := readMembers(r)
		if err != nil {
			return nil, fmt.Errorf("struct %q: %w", name, err)
		}
		// The Go linker emits each type once; should a name repeat (e.g. a
		// binary linking C code with a same-named struct), the first, Go's,
		// wins.
		found[name] = fields
	}
	return found, nil
}

// unitHeader reads a compilation unit's header: the unit, where it ends
// and the offset of its abbreviation table.
func (r *dieReader) unitHeader() (u unit, end, abbrevOff uint64, err error) {
	length := uint64(r.u32())
	u.offsetSize = 4
	if length == 0xffffffff {
		length, u.offsetSize = r.u64(), 8
	} else if length >= 0xfffffff0 {
		return u, 0, 0, fmt.Errorf("%w: reserved unit length %#x", errLean, length)
	}
	end = r.pos + length
	u.version = r.u16()
	switch {
	case u.version >= 5:
		kind := r.u8()
		u.addrSize = uint64(r.u8())
		abbrevOff = r.offset(u)
		switch kind {
		case 4, 5: // skeleton, split compile: dwo_id
			r.skip(8)
		case 2, 6: // type units: signature, type offset
			r.skip(8 + u.offsetSize)
		}
	case u.version >= 2:
		abbrevOff = r.offset(u)
		u.addrSize = uint64(r.u8())
	default:
		return u, 0, 0, fmt.Errorf("%w: DWARF version %d", errLean, u.version)
	}
	return u, end, abbrevOff, r.err
}
