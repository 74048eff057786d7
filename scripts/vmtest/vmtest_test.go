package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpioRecord is one parsed newc record.
type cpioRecord struct {
	name         string
	mode         uint32
	rmaj, rmin   uint32
	data         []byte
	headerOffset int
}

// parseNewc decodes a newc archive independently of the writer, checking
// the alignment rules the kernel's unpacker relies on.
func parseNewc(t *testing.T, b []byte) []cpioRecord {
	t.Helper()
	var recs []cpioRecord
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field %d at %d: %v", i, off, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 {
			t.Fatalf("record at unaligned offset %d", off)
		}
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		nameStart := off + 110
		name := string(b[nameStart : nameStart+int(namesize)-1])
		if b[nameStart+int(namesize)-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		dataStart := align(nameStart + int(namesize))
		rec := cpioRecord{name: name, mode: mode, rmaj: rmaj, rmin: rmin, data: b[dataStart : dataStart+int(size)], headerOffset: off}
		off = align(dataStart + int(size))
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return recs
		}
		recs = append(recs, rec)
	}
}

func TestCPIO(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "hostfile")
	if err := os.WriteFile(host, []byte("abcde"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRootfs()
	r.addHostFile("/usr/sbin/tool", host, 0o755)
	r.addBytes("/etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644)
	r.addSymlink("/bin/sh", "busybox")
	r.addCharDev("/dev/console", 0o600, 5, 1)
	r.addDir("/tmp", 0o1777)
	var buf bytes.Buffer
	if err := r.writeCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	recs := parseNewc(t, buf.Bytes())
	byName := map[string]cpioRecord{}
	var names []string
	for _, rec := range recs {
		byName[rec.name] = rec
		names = append(names, rec.name)
	}
	// Parents must come before children: the unpacker creates nothing
	// implicitly.
	seen := map[string]bool{}
	for _, n := range names {
		if parent := filepath.Dir(n); parent != "." && !seen[parent] {
			t.Errorf("%s comes before its directory %s", n, parent)
		}
		seen[n] = true
	}
	for _, want := range []struct {
		name string
		mode uint32
		data string
	}{
		{"usr/sbin/tool", modeRegular | 0o755, "abcde"},
		{"etc/hosts", modeRegular | 0o644, "127.0.0.1 localhost\n"},
		{"bin/sh", modeSymlink | 0o777, "busybox"},
		{"tmp", modeDir | 0o1777, ""},
		{"usr", modeDir | 0o755, ""},
	} {
		rec, ok := byName[want.name]
		if !ok {
			t.Errorf("%s missing; have %v", want.name, names)
			continue
		}
		if rec.mode != want.mode || string(rec.data) != want.data {
			t.Errorf("%s: mode %o data %q, want %o %q", want.name, rec.mode, rec.data, want.mode, want.data)
		}
	}
	if c := byName["dev/console"]; c.mode != modeCharDev|0o600 || c.rmaj != 5 || c.rmin != 1 {
		t.Errorf("dev/console = %+v", c)
	}

	// The reference implementation must agree, where it is installed.
	if cpio, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command(cpio, "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -it: %v", err)
		}
		listed := strings.Fields(string(out))
		if !slices.Equal(listed, names) {
			t.Errorf("cpio lists %v, want %v", listed, names)
		}
	}
}

func TestModulePrepare(t *testing.T) {
	modDir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(modDir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kernel/net/sched/cls_bpf.ko", "cls")
	write("kernel/net/core/dep-a.ko", "a")
	write("kernel/net/core/dep_b.ko", "b")
	write("modules.builtin", "kernel/drivers/net/veth.ko\n")
	write("modules.dep", "kernel/net/sched/cls_bpf.ko: kernel/net/core/dep-a.ko kernel/net/core/dep_b.ko\n"+
		"kernel/net/core/dep-a.ko: kernel/net/core/dep_b.ko\nkernel/net/core/dep_b.ko:\n")

	idx, err := newModuleIndex(modDir, filepath.Join(t.TempDir(), "aliases.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	mods, notes, err := idx.prepare([]string{"cls-bpf", "veth", "sch_nothere"}, "6.1.0-test", out)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range mods {
		order = append(order, m.Name)
		if !strings.HasPrefix(m.GuestPath, "/lib/modules/6.1.0-test/kernel/") {
			t.Errorf("guest path %s", m.GuestPath)
		}
		if _, err := os.Stat(m.File); err != nil {
			t.Errorf("module file: %v", err)
		}
	}
	if want := []string{"dep_b", "dep_a", "cls_bpf"}; !slices.Equal(order, want) {
		t.Errorf("load order %v, want %v", order, want)
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "veth is built in") || !strings.Contains(joined, "sch_nothere does not exist") {
		t.Errorf("notes = %q", notes)
	}
}

func TestSelectKernels(t *testing.T) {
	got, err := selectKernels("6.1, host,6.1,5.10")
	if err != nil || !slices.Equal(got, []string{"6.1", "host", "5.10"}) {
		t.Fatalf("selectKernels = %v, %v", got, err)
	}
	if _, err := selectKernels("4.19"); err == nil {
		t.Fatal("unknown kernel accepted")
	}
	names := map[string]bool{}
	for _, k := range kernelTable {
		if names[k.Name] || k.Name == hostEntry || k.Suite == "" || k.Package == "" {
			t.Errorf("bad table entry %+v", k)
		}
		names[k.Name] = true
	}
}

func TestVersionLess(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed: not a Debian host, where vmtest cannot fetch kernels anyway")
	}
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"5.10.223-1", "5.10.226-1", true},
		{"6.1.176-1", "6.1.76-1", false},
		{"1:1.0", "2.0", false},
		{"6.12~rc1-1", "6.12-1", true},
	} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

func TestPayloadTimeout(t *testing.T) {
	for _, c := range []struct{ total, want time.Duration }{
		{8 * time.Minute, 8*time.Minute - 48*time.Second},
		{time.Minute, 40 * time.Second},
		{30 * time.Minute, 29 * time.Minute},
	} {
		if got := payloadTimeout(c.total); got != c.want {
			t.Errorf("payloadTimeout(%s) = %s, want %s", c.total, got, c.want)
		}
	}
}
