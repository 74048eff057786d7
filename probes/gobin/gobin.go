// Package gobin inspects a Go executable on disk: where its functions are,
// where they return, and how its structs are laid out. It only reads the file
// (ELF, pclntab, symbol table, DWARF) and never loads BPF, so it works without
// privileges and is safe to unit test.
//
// Only linux/amd64 executables are supported: the RET finder decodes x86-64
// machine code and the probes read the amd64 Go register ABI.
package gobin

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sync"
)

var (
	// ErrNotELF is returned by Open when the file is not an ELF object.
	ErrNotELF = errors.New("not an ELF file")
	// ErrNotGo is returned by Open when the file is an ELF object without Go
	// build information, such as a C program.
	ErrNotGo = errors.New("not a Go binary")
	// ErrUnsupportedArch is returned by Open for executables built for an
	// architecture other than amd64.
	ErrUnsupportedArch = errors.New("unsupported architecture")
	// ErrNoFunc is returned by Binary.Func when the pcln table has no function
	// of that name, typically because the linker dropped it as dead code or
	// the compiler inlined every call to it.
	ErrNoFunc = errors.New("function not found")
	// ErrNoRet is returned by Binary.RetOffsets for a function that never
	// returns to its caller: it ends in a tail call or a panic.
	ErrNoRet = errors.New("no RET instruction")
	// ErrNoDWARF is returned by Binary.FieldOffset when the binary carries no
	// debug information (built with -ldflags=-w or stripped afterwards).
	ErrNoDWARF = errors.New("binary has no DWARF")
	// ErrNoType is returned by Binary.FieldOffset when DWARF describes no
	// struct type of that name.
	ErrNoType = errors.New("struct type not found in DWARF")
	// ErrNoField is returned by Binary.FieldOffset when the struct exists but
	// has no field of that name, e.g. a field added in a later Go release.
	ErrNoField = errors.New("struct field not found in DWARF")
)

// Binary is an opened Go executable. Its methods may be called from several
// goroutines; the tables they need are parsed on first use and then cached.
type Binary struct {
	// Path is the file name given to Open.
	Path string
	// GoVersion is the toolchain that built the binary as recorded in its
	// build information, e.g. "go1.26.8".
	GoVersion string
	// HasDWARF reports whether the binary carries DWARF debug information,
	// the preferred source of struct field offsets.
	HasDWARF bool
	// HasSymtab reports whether the binary still has its .symtab section,
	// which -ldflags=-s and strip(1) remove.
	HasSymtab bool
	// Modules maps the path of every module linked into the binary (the
	// main module and its dependencies, from the build information) to its
	// version, such as "v1.60.0". A module replaced by another version
	// reports the replacement's version; one replaced by a local directory,
	// and a main module built outside version control, report "" or
	// "(devel)", which no offsets table can match.
	Modules map[string]string

	file *os.File
	elf  *elf.File

	// mu guards what follows. The answers (functions, symbols and structs
	// looked up, and the itab index) are small and kept for the binary's
	// life, so that further processes of the same executable cost no
	// parsing. The pcln index is rebuilt on demand and dropped by Release.
	mu      sync.Mutex
	funcs   map[string]funcAnswer
	symbols map[string]symbol
	structs map[string]map[string]uint64 // nil: looked up, not in DWARF
	itabs   *itabIndex
	pcln    *pclnIndex
}

// funcAnswer is a function looked up: where it is, or why not.
type funcAnswer struct {
	entry, end uint64
	err        error
}

// Open opens the Go executable at path. The error wraps ErrNotELF, ErrNotGo or
// ErrUnsupportedArch when the file is not something the tracer can probe.
func Open(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	b, err := newBinary(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

func newBinary(path string, f *os.File) (*Binary, error) {
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w: %v", path, ErrNotELF, err)
	}
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("opening %s: %w: %s %s (only amd64 is supported)",
			path, ErrUnsupportedArch, ef.Class, ef.Machine)
	}
	info, err := buildinfo.Read(f)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w: %v", path, ErrNotGo, err)
	}
	b := &Binary{
		Path:      path,
		GoVersion: info.GoVersion,
		HasDWARF:  ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil,
		HasSymtab: ef.Section(".symtab") != nil,
		Modules:   modules(info),
		file:      f,
		elf:       ef,
	}
	b.funcs = map[string]funcAnswer{}
	b.symbols = map[string]symbol{}
	b.structs = map[string]map[string]uint64{}
	return b, nil
}

// modules lists the modules of a build's information by path.
func modules(info *buildinfo.BuildInfo) map[string]string {
	m := make(map[string]string, len(info.Deps)+1)
	if info.Main.Path != "" {
		m[info.Main.Path] = info.Main.Version
	}
	for _, d := range info.Deps {
		// Code and DWARF name the module's packages by its own path, even
		// when another module's code stands in for it.
		v := d.Version
		if d.Replace != nil {
			v = d.Replace.Version
		}
		m[d.Path] = v
	}
	return m
}

// ModuleVersion returns the version of the module at path linked into the
// binary, and whether the binary links it with a usable version.
func (b *Binary) ModuleVersion(path string) (string, bool) {
	v, ok := b.Modules[path]
	return v, ok && v != "" && v != "(devel)"
}

// Close releases the underlying file and every table.
func (b *Binary) Close() error {
	b.Release()
	return b.file.Close()
}

// Release drops the tables built to answer questions (the pcln index and
// the file mappings behind it), keeping the answers already given and the
// itab index: what an attached process needs. A later question the answers
// do not cover builds the table again. Call it once a burst of attaching is
// over.
func (b *Binary) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pcln != nil {
		b.pcln.close()
		b.pcln = nil
	}
}

// Func describes one function of the binary as the uprobe attach code needs
// it.
type Func struct {
	// Name is the fully qualified Go name, e.g. "net/http.serverHandler.ServeHTTP".
	Name string
	// Addr is the virtual address of the first instruction.
	Addr uint64
	// End is the virtual address just past the function, which is where the
	// next function starts: it includes the alignment padding after the code.
	End uint64
	// Offset is the file offset of Addr, which is what a uprobe is attached at.
	Offset uint64
}

// Func looks up a function by its fully qualified name. It reads the pcln
// table, which the Go runtime itself needs and which therefore survives
// -ldflags='-s -w' and strip(1). The error wraps ErrNoFunc when the function
// is absent.
func (b *Binary) Func(name string) (Func, error) {
	b.mu.Lock()
	a, ok := b.funcs[name]
	if !ok {
		var keep bool
		a, keep = b.lookupFunc(name)
		if keep {
			b.funcs[name] = a
		}
	}
	b.mu.Unlock()
	if a.err != nil {
		return Func{}, a.err
	}
	off, err := b.FileOffset(a.entry)
	if err != nil {
		return Func{}, fmt.Errorf("looking up %s in %s: %w", name, b.Path, err)
	}
	return Func{Name: name, Addr: a.entry, End: a.end, Offset: off}, nil
}

// lookupFunc finds name in the pcln table, and says whether the answer is
// to be kept; call with b.mu held.
func (b *Binary) lookupFunc(name string) (funcAnswer, bool) {
	if b.pcln == nil {
		idx, err := b.loadPcln()
		if err != nil {
			// A table that cannot be read now is an error for this
			// question, not an answer about the function.
			return funcAnswer{err: err}, false
		}
		b.pcln = idx
	}
	entry, end, ok := b.pcln.lookup(name)
	if !ok {
		return funcAnswer{err: fmt.Errorf("looking up %s in %s: %w", name, b.Path, ErrNoFunc)}, true
	}
	return funcAnswer{entry: entry, end: end}, true
}

// FileOffset translates a virtual address into the file offset that holds
// it, using the PT_LOAD program header that maps the address. Addresses in
// zero-filled memory (bss) have no file offset and are an error.
func (b *Binary) FileOffset(vaddr uint64) (uint64, error) {
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || vaddr < p.Vaddr || vaddr-p.Vaddr >= p.Memsz {
			continue
		}
		if vaddr-p.Vaddr >= p.Filesz {
			return 0, fmt.Errorf("address %#x of %s is in zero-filled memory, not in the file", vaddr, b.Path)
		}
		return p.Off + (vaddr - p.Vaddr), nil
	}
	return 0, fmt.Errorf("address %#x is not in any loadable segment of %s", vaddr, b.Path)
}

// readMembers consumes the children of a struct entry and returns the byte
// offset of each named member.
func readMembers(r *dwarf.Reader) (map[string]uint64, error) {
	fields := make(map[string]uint64)
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil || e.Tag == 0 {
			return fields, nil
		}
		if e.Children {
			r.SkipChildren()
		}
		if e.Tag != dwarf.TagMember {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		off, err := memberOffset(e)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", name, err)
		}
		fields[name] = off
	}
}

// memberOffset decodes DW_AT_data_member_location. Go writes a constant;
// older producers wrote a DW_OP_plus_uconst expression, which is accepted too
// so that a C struct in the same binary does not make the walk fail.
func memberOffset(e *dwarf.Entry) (uint64, error) {
	switch v := e.Val(dwarf.AttrDataMemberLoc).(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("negative member offset %d", v)
		}
		return uint64(v), nil
	case []byte:
		const opPlusUconst = 0x23
		if len(v) < 2 || v[0] != opPlusUconst {
			return 0, fmt.Errorf("unsupported member location expression % x", v)
		}
		off, n := uleb128(v[1:])
		if n != len(v)-1 {
			return 0, fmt.Errorf("malformed member location expression % x", v)
		}
		return off, nil
	case nil:
		// Union members and the first field of some producers omit the
		// attribute: the member starts at offset 0.
		return 0, nil
	default:
		return 0, fmt.Errorf("unsupported member location of type %T", v)
	}
}

func uleb128(b []byte) (uint64, int) {
	var v uint64
	var shift uint
	for i, c := range b {
		if shift >= 64 {
			return 0, 0
		}
		v |= uint64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}
