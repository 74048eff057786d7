package openssl

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Kind is the shape of the functions probed, which says where their
// arguments and results are.
type Kind uint8

const (
	// Internal: libssl's ssl_read_internal and ssl_write_internal
	// (SSL *s, void *buf, size_t num, size_t *done), returning 1 on
	// success with the bytes in *done.
	Internal Kind = iota + 1
	// Exported: SSL_read and SSL_write (SSL *s, void *buf, int num),
	// returning the bytes (Node's binary, where the internal functions
	// are inlined into them).
	Exported
)

// Sites are where one TLS library of a process is probed.
type Sites struct {
	// Path is the file probed, as the process maps it (under
	// /proc/PID/root, so that a container's file is the one probed).
	Path string
	// Name is the file as the process names it.
	Name string
	Kind Kind
	// Read and Write are the file offsets of the read and write
	// functions, and Inst the first instruction of each, where the entry
	// probes go.
	Read, Write         uint64
	ReadInst, WriteInst string
}

// ErrNoTLS: the process maps no OpenSSL (libssl) and its executable
// exports no SSL_read/SSL_write, or it is a Go program, whose TLS the Go
// probes read.
var ErrNoTLS = errors.New("no OpenSSL in the process")

// FindSites finds the TLS library of process pid: a libssl it maps, or its
// own executable when it exports SSL_read and SSL_write (Node.js). The
// error wraps ErrNoTLS when there is none; another error means there is one
// whose sites could not be found (another OpenSSL build).
func FindSites(pid int) (*Sites, error) {
	s, err := FindLibssl(pid)
	if !errors.Is(err, ErrNoTLS) {
		return s, err
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("pid %d: reading its executable's path: %w", pid, err)
	}
	s, err = exportedSites(fmt.Sprintf("/proc/%d/exe", pid), exe)
	if err != nil {
		return nil, err
	}
	s.Path = filepath.Join(root, exe)
	return s, nil
}

// FindLibssl finds the sites of the libssl process pid maps, if any (the
// error wraps ErrNoTLS when it maps none): what a process that had no
// OpenSSL when it was attached may have loaded since.
func FindLibssl(pid int) (*Sites, error) {
	libs, err := mappedLibssl(pid)
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		return libsslSites(filepath.Join(fmt.Sprintf("/proc/%d/root", pid), lib), lib)
	}
	return nil, fmt.Errorf("pid %d: %w", pid, ErrNoTLS)
}

// mappedLibssl lists the libssl files process pid maps.
func mappedLibssl(pid int) ([]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("pid %d: reading its mappings: %w", pid, err)
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if !strings.HasPrefix(filepath.Base(path), "libssl.so") || seen[path] {
			continue
		}
		seen[path] = true
		out = append(out, path)
	}
	return out, sc.Err()
}

// libsslSites finds ssl_read_internal and ssl_write_internal in a libssl:
// the targets of the first CALL in SSL_read_ex and SSL_write_ex (OpenSSL
// 3.0 builds: `sub $8,%rsp; call ssl_read_internal`), whose own first
// instruction the kernel emulates, unlike the `sub` that the exported
// functions start with.
func libsslSites(path, name string) (*Sites, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	syms, err := dynsyms(f, "SSL_read_ex", "SSL_write_ex")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := beforeQUIC(f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &Sites{Path: path, Name: name, Kind: Internal}
	for i, sym := range []string{"SSL_read_ex", "SSL_write_ex"} {
		target, err := firstCall(f, syms[sym])
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, sym, err)
		}
		off, inst, err := probeSite(f, target)
		if err != nil {
			return nil, fmt.Errorf("%s: the function %s calls: %w", name, sym, err)
		}
		if i == 0 {
			s.Read, s.ReadInst = off, inst
		} else {
			s.Write, s.WriteInst = off, inst
		}
	}
	return s, nil
}

// exportedSites finds SSL_read and SSL_write exported by an executable that
// carries OpenSSL itself (Node.js).
func exportedSites(path, name string) (*Sites, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	syms, err := dynsyms(f, "SSL_read", "SSL_write")
	if err != nil {
		if errors.Is(err, errMissing) {
			return nil, fmt.Errorf("%s: %w", name, ErrNoTLS)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// BoringSSL and LibreSSL export SSL_read too, with other layouts.
	if _, err := dynsyms(f, "OPENSSL_version_major"); err != nil {
		return nil, fmt.Errorf("%s exports SSL_read but not OPENSSL_version_major: not OpenSSL 3 (BoringSSL, LibreSSL?), not probed", name)
	}
	if err := beforeQUIC(f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &Sites{Name: name, Kind: Exported}
	if s.Read, s.ReadInst, err = probeSite(f, syms["SSL_read"]); err != nil {
		return nil, fmt.Errorf("%s: SSL_read: %w", name, err)
	}
	if s.Write, s.WriteInst, err = probeSite(f, syms["SSL_write"]); err != nil {
		return nil, fmt.Errorf("%s: SSL_write: %w", name, err)
	}
	return s, nil
}

var errMissing = errors.New("symbol not exported")

// beforeQUIC refuses OpenSSL 3.2 and later, recognised by the QUIC API they
// added (SSL_handle_events, SSL_is_connection): their SSL is a handle whose
// connection state, the read BIO included, lives in another struct, which
// the offsets the probes read (OpenSSL 3.0's) would misread.
func beforeQUIC(f *elf.File) error {
	for _, sym := range []string{"SSL_handle_events", "SSL_is_connection"} {
		if _, err := dynsyms(f, sym); err == nil {
			return fmt.Errorf("OpenSSL 3.2 or later (it exports %s): its SSL layout is not probed yet", sym)
		}
	}
	return nil
}

// dynsyms returns the addresses of the dynamic symbols named, all of which
// must be functions defined in f.
func dynsyms(f *elf.File, names ...string) (map[string]uint64, error) {
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMissing, err)
	}
	out := map[string]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			for _, n := range names {
				if s.Name == n {
					out[n] = s.Value
				}
			}
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("%w: %s", errMissing, n)
		}
	}
	return out, nil
}

// code reads n bytes of code at virtual address addr.
func code(f *elf.File, addr uint64, n int) ([]byte, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			n = int(min(uint64(n), p.Vaddr+p.Filesz-addr))
			b := make([]byte, n)
			if _, err := p.ReadAt(b, int64(addr-p.Vaddr)); err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("address %#x is in no executable segment", addr)
}

// fileOffset converts a virtual address of f to its file offset.
func fileOffset(f *elf.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no segment", addr)
}

// firstCall returns the target of the first direct CALL among the first
// few instructions at addr (a wrapper's call of the function doing the
// work), refusing code that branches or returns before it.
func firstCall(f *elf.File, addr uint64) (uint64, error) {
	b, err := code(f, addr, 32)
	if err != nil {
		return 0, err
	}
	for pc := 0; pc < len(b); {
		inst, err := x86asm.Decode(b[pc:], 64)
		if err != nil {
			return 0, fmt.Errorf("decoding at %#x: %w", addr+uint64(pc), err)
		}
		pc += inst.Len
		switch inst.Op {
		case x86asm.CALL:
			rel, ok := inst.Args[0].(x86asm.Rel)
			if !ok {
				return 0, errors.New("its first call is indirect (not an OpenSSL 3.0 layout)")
			}
			return uint64(int64(addr) + int64(pc) + int64(rel)), nil
		case x86asm.RET, x86asm.JMP:
			return 0, errors.New("no call before its first jump (not an OpenSSL 3.0 layout)")
		}
	}
	return 0, errors.New("no call in its first instructions (not an OpenSSL 3.0 layout)")
}

// probeSite returns the file offset of the function at addr and its first
// instruction, which must be one the kernel emulates (a push, on the
// kernels that have uprobe push emulation; a relative jump or call), or
// an endbr64 followed by one: a single-stepped entry would cost ten times
// as much on every read and write.
func probeSite(f *elf.File, addr uint64) (uint64, string, error) {
	b, err := code(f, addr, 16)
	if err != nil {
		return 0, "", err
	}
	if len(b) >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa {
		return 0, "", errors.New("it starts with endbr64 (a CET build: not probed yet)")
	}
	inst, err := x86asm.Decode(b, 64)
	if err != nil {
		return 0, "", fmt.Errorf("decoding its first instruction: %w", err)
	}
	if inst.Op != x86asm.PUSH {
		return 0, "", fmt.Errorf("its first instruction is %s, not a push: not the OpenSSL 3.0 layout probed", inst.Op)
	}
	off, err := fileOffset(f, addr)
	if err != nil {
		return 0, "", err
	}
	return off, strings.ToLower(x86asm.IntelSyntax(inst, addr, nil)), nil
}
