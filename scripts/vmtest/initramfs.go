package main

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File type bits of a cpio mode, as in stat(2).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// fsEntry is one file of the guest's root file system.
type fsEntry struct {
	mode    uint32 // type bits | permissions
	hostSrc string // regular file: copied from this host path ...
	data    []byte // ... or this content
	target  string // symlink target
	major   uint32 // device numbers of a character device
	minor   uint32
}

// rootfs is the guest root file system being assembled, keyed by absolute
// guest path. Later additions replace earlier ones.
type rootfs struct {
	entries map[string]*fsEntry
}

func newRootfs() *rootfs { return &rootfs{entries: map[string]*fsEntry{}} }

// clone returns a copy that can be extended without changing r: the common
// part is assembled once and then specialised per kernel.
func (r *rootfs) clone() *rootfs { return &rootfs{entries: maps.Clone(r.entries)} }

func (r *rootfs) addDir(p string, perm uint32) {
	r.entries[path.Clean(p)] = &fsEntry{mode: modeDir | perm}
}

func (r *rootfs) addHostFile(p, src string, perm uint32) {
	r.entries[path.Clean(p)] = &fsEntry{mode: modeRegular | perm, hostSrc: src}
}

func (r *rootfs) addBytes(p string, data []byte, perm uint32) {
	r.entries[path.Clean(p)] = &fsEntry{mode: modeRegular | perm, data: data}
}

func (r *rootfs) addSymlink(p, target string) {
	r.entries[path.Clean(p)] = &fsEntry{mode: modeSymlink | 0o777, target: target}
}

func (r *rootfs) addCharDev(p string, perm, major, minor uint32) {
	r.entries[path.Clean(p)] = &fsEntry{mode: modeCharDev | perm, major: major, minor: minor}
}

// addHostTree copies a host directory (the payload) to guestDir, keeping
// permissions and symlinks as they are.
func (r *rootfs) addHostTree(guestDir, hostDir string) error {
	return filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(hostDir, p)
		gp := path.Join(guestDir, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := uint32(info.Mode().Perm())
		switch {
		case d.IsDir():
			r.addDir(gp, perm)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			r.addSymlink(gp, target)
		case d.Type().IsRegular():
			r.addHostFile(gp, p, perm)
		default:
			return fmt.Errorf("%s: only files, directories and symlinks can be packed", p)
		}
		return nil
	})
}

// addHostBinary copies a host executable to the same path in the guest,
// with the shared libraries and dynamic loader it needs (as ldd resolves
// them on the host), so host tools such as bpftool run unchanged.
func (r *rootfs) addHostBinary(bin string) error {
	r.addHostFile(bin, bin, 0o755)
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	dynamic := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	f.Close()
	if !dynamic {
		return nil
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// Lines are "libz.so.1 => /lib/.../libz.so.1 (0x...)" or, for the
		// loader, "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
		line = strings.TrimSpace(line)
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		lib, _, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(lib, "/") {
			if strings.Contains(line, "not found") {
				return fmt.Errorf("ldd %s: %s", bin, line)
			}
			continue
		}
		// Symlinks are resolved so that the guest gets the library itself
		// under the name the loader asks for.
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", bin, lib, err)
		}
		r.addHostFile(lib, real, 0o755)
	}
	return nil
}

// writeCPIO writes the tree as a newc archive, the format the kernel's
// initramfs unpacker reads. Uncompressed on purpose: decompressing inside a
// TCG guest costs more than reading a few more megabytes.
func (r *rootfs) writeCPIO(w io.Writer) error {
	// The unpacker does not create missing parent directories.
	for p := range maps.Clone(r.entries) {
		for dir := path.Dir(p); dir != "/" && dir != "."; dir = path.Dir(dir) {
			if _, ok := r.entries[dir]; !ok {
				r.addDir(dir, 0o755)
			}
		}
	}
	names := make([]string, 0, len(r.entries))
	for p := range r.entries {
		names = append(names, p)
	}
	// Sorted order puts every directory before its contents.
	sort.Strings(names)
	cw := newCPIOWriter(w, time.Now())
	for _, p := range names {
		e := r.entries[p]
		name := strings.TrimPrefix(p, "/")
		var err error
		switch e.mode & 0o170000 {
		case modeRegular:
			if e.hostSrc != "" {
				err = cw.writeHostFile(name, e.mode, e.hostSrc)
			} else {
				err = cw.writeEntry(name, e.mode, 0, 0, e.data)
			}
		case modeSymlink:
			err = cw.writeEntry(name, e.mode, 0, 0, []byte(e.target))
		case modeCharDev:
			err = cw.writeEntry(name, e.mode, e.major, e.minor, nil)
		default:
			err = cw.writeEntry(name, e.mode, 0, 0, nil)
		}
		if err != nil {
			return err
		}
	}
	return cw.close()
}

// cpioWriter writes newc ("070701") cpio records: a 110-byte ASCII header
// of 13 hex fields, the NUL-terminated name, then the data, with the name
// and the data each padded to a multiple of 4 bytes.
type cpioWriter struct {
	w     *bufio.Writer
	off   int64
	ino   uint32
	mtime int64
}

func newCPIOWriter(w io.Writer, mtime time.Time) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), mtime: mtime.Unix(), ino: 1}
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if rem := c.off % 4; rem != 0 {
		return c.write(make([]byte, 4-rem))
	}
	return nil
}

func (c *cpioWriter) header(name string, mode uint32, size int64, rmajor, rminor uint32) error {
	if size > 0xffffffff {
		return fmt.Errorf("%s: %d bytes is too large for a newc cpio entry", name, size)
	}
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, uint32(c.mtime), uint32(size), 0, 0, rmajor, rminor, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) writeEntry(name string, mode, rmajor, rminor uint32, data []byte) error {
	if err := c.header(name, mode, int64(len(data)), rmajor, rminor); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) writeHostFile(name string, mode uint32, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := c.header(name, mode, fi.Size(), 0, 0); err != nil {
		return err
	}
	n, err := io.CopyN(c.w, f, fi.Size())
	c.off += n
	if err != nil {
		return fmt.Errorf("packing %s: %w", src, err)
	}
	return c.pad()
}

// close writes the trailer record that ends the archive.
func (c *cpioWriter) close() error {
	if err := c.writeEntry("TRAILER!!!", 0, 0, 0, nil); err != nil {
		return err
	}
	return c.w.Flush()
}

// Guest layout. /payload and the result directory are the contract with
// payloads (see README.md); the rest is internal.
const (
	guestPayloadDir = "/payload"
	guestResultDir  = "/results"
	guestConfig     = "/vmtest/config.json"
	guestBasePath   = "/bin:/sbin:/usr/bin:/usr/sbin"
)

// baseRootfs assembles what every guest shares: init, busybox with its
// applets, host tools with their libraries, a few /etc files and the payload.
func baseRootfs(initBin, busybox string, hostBins []string, payloadDir string) (*rootfs, error) {
	r := newRootfs()
	r.addHostFile("/init", initBin, 0o755)
	// The kernel opens /dev/console for init's stdio before init can mount
	// devtmpfs: without this node init would run with no output at all.
	r.addCharDev("/dev/console", 0o600, 5, 1)
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/root", "/sbin", "/usr/bin", "/usr/sbin", "/etc", "/boot"} {
		r.addDir(d, 0o755)
	}
	r.addDir("/tmp", 0o1777)

	r.addHostFile("/bin/busybox", busybox, 0o755)
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			r.addSymlink("/bin/"+applet, "busybox")
		}
	}
	// Scripts written for a normal system say #!/usr/bin/env ..., and the
	// kernel runs /sbin/modprobe to load modules it wants by itself.
	r.addSymlink("/usr/bin/env", "/bin/busybox")
	r.addSymlink("/sbin/modprobe", "/bin/busybox")

	for _, b := range hostBins {
		if err := r.addHostBinary(b); err != nil {
			return nil, err
		}
	}

	// Go's net package resolves "localhost" through /etc/hosts, and
	// os/user and id(1) need passwd/group.
	r.addBytes("/etc/hosts", []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), 0o644)
	r.addBytes("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	r.addBytes("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	r.addBytes("/etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files dns\n"), 0o644)

	if err := r.addHostTree(guestPayloadDir, payloadDir); err != nil {
		return nil, fmt.Errorf("packing payload: %w", err)
	}
	return r, nil
}

// checkStatic returns an error unless bin is a statically linked executable:
// busybox provides the guest's shell and must not depend on a C library that
// is not there.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked")
		}
	}
	return nil
}
