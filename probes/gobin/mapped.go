package gobin

import (
	"debug/elf"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mapped is a section of the executable mapped read-only from the file.
// Its pages belong to the page cache, not the agent's heap: they count in
// the agent's resident memory only while mapped and touched, and unmap
// gives them back at once, where a copy on the heap would be garbage that
// the Go runtime returns to the system late or never.
type mapped struct {
	data []byte // the section's bytes
	mem  []byte // the whole mapping, page aligned; nil when data is a heap copy
}

// mapSection maps section s of f. A section the kernel cannot map (a file
// system without mmap) is read into the heap instead.
func mapSection(f *os.File, s *elf.Section) (*mapped, error) {
	if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, fmt.Errorf("section %s has no plain bytes in the file", s.Name)
	}
	return mapRange(f, s.Offset, s.Size)
}

// mapRange maps n bytes of f at offset off.
func mapRange(f *os.File, off, n uint64) (*mapped, error) {
	if n == 0 {
		return &mapped{}, nil
	}
	page := uint64(os.Getpagesize())
	start := off &^ (page - 1)
	mem, err := unix.Mmap(int(f.Fd()), int64(start), int(off+n-start), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		data := make([]byte, n)
		if _, rerr := f.ReadAt(data, int64(off)); rerr != nil {
			return nil, fmt.Errorf("reading %d bytes at %#x: %w (and mapping them: %v)", n, off, rerr, err)
		}
		return &mapped{data: data}, nil
	}
	return &mapped{data: mem[off-start:], mem: mem}, nil
}

// dropResident takes the mapping's pages out of the agent's resident set:
// they stay in the page cache, and a later read maps them again. A scan
// through a large section calls it every so often, so that the pages it
// has passed do not add up.
func (m *mapped) dropResident() {
	if m != nil && m.mem != nil {
		_ = unix.Madvise(m.mem, unix.MADV_DONTNEED)
	}
}

// close unmaps the section; its bytes must not be used afterwards.
func (m *mapped) close() {
	if m == nil {
		return
	}
	if m.mem != nil {
		_ = unix.Munmap(m.mem)
	}
	m.data, m.mem = nil, nil
}
