package gobin

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/zerotrace/zerotrace/probes/gobin/gobintest"
)

// fixtureFunc is the function with four return statements in
// tests/testdata/retfinder.
const fixtureFunc = "main.classify"

// variant is one way of building the fixture that the tracer must handle.
type variant struct {
	name     string
	env      []string
	flags    []string
	stripped bool
	needsCC  bool
	// twin is the unstripped variant with the same code layout: -s -w
	// removes tables but moves no code, so a stripped binary must yield
	// exactly the twin's addresses. That catches a wrong text base, which
	// would otherwise still find plausible RETs.
	twin int
}

var variants = []variant{
	{name: "plain", env: []string{"CGO_ENABLED=0"}},
	{name: "stripped", env: []string{"CGO_ENABLED=0"}, flags: []string{"-ldflags=-s -w"}, stripped: true, twin: 0},
	{name: "pie", env: []string{"CGO_ENABLED=0"}, flags: []string{"-buildmode=pie"}},
	{name: "pie-stripped", env: []string{"CGO_ENABLED=0"}, flags: []string{"-buildmode=pie", "-ldflags=-s -w"}, stripped: true, twin: 2},
	// External linking puts C start-up code before runtime.text, which is
	// what makes the text base of a stripped binary hard to find.
	{name: "external", env: []string{"CGO_ENABLED=1"}, flags: []string{"-ldflags=-linkmode=external"}, needsCC: true},
	{name: "external-stripped", env: []string{"CGO_ENABLED=1"}, flags: []string{"-ldflags=-linkmode=external -s -w"}, stripped: true, needsCC: true, twin: 4},
}

var fixtures *gobintest.Fixtures

func TestMain(m *testing.M) {
	var err error
	if fixtures, err = gobintest.NewFixtures(); err != nil {
		panic(err)
	}
	code := m.Run()
	fixtures.Close()
	os.Exit(code)
}

func buildFixture(t testing.TB, v variant) string {
	t.Helper()
	if v.needsCC {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skipf("external linking needs a C compiler: %v", err)
		}
	}
	return fixtures.Build(t, "retfinder-"+v.name, gobintest.RetFinder, v.env, v.flags...)
}

func openFixture(t *testing.T, v variant) *Binary {
	t.Helper()
	b, err := Open(buildFixture(t, v))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// objdumpRets lists the virtual addresses of the RET instructions of fn as
// the Go toolchain's own disassembler sees them: an oracle independent of
// the code under test. It needs the symbol table, so only unstripped
// binaries can be checked this way.
func objdumpRets(t *testing.T, path, fn string) []uint64 {
	t.Helper()
	out, err := exec.Command("go", "tool", "objdump", "-s", "^"+strings.ReplaceAll(fn, ".", `\.`)+"$", path).Output()
	if err != nil {
		t.Fatalf("go tool objdump: %v", err)
	}
	var rets []uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// Lines look like: "  main.go:25  0x627105  c3  RET".
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "RET" {
			continue
		}
		addr, err := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
		if err != nil {
			t.Fatalf("parsing objdump line %q: %v", sc.Text(), err)
		}
		rets = append(rets, addr)
	}
	return rets
}

func TestOpen(t *testing.T) {
	b := openFixture(t, variants[0])
	if b.GoVersion != runtime.Version() {
		t.Fatalf("GoVersion = %q, want %q (is the go command on PATH the toolchain running this test?)", b.GoVersion, runtime.Version())
	}
	if !b.HasDWARF || !b.HasSymtab {
		t.Errorf("plain build: HasDWARF=%v HasSymtab=%v, want both true", b.HasDWARF, b.HasSymtab)
	}
	s := openFixture(t, variants[1])
	if s.HasDWARF || s.HasSymtab {
		t.Errorf("stripped build: HasDWARF=%v HasSymtab=%v, want both false", s.HasDWARF, s.HasSymtab)
	}
	if s.GoVersion != b.GoVersion {
		t.Errorf("stripped GoVersion = %q, want %q", s.GoVersion, b.GoVersion)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("just some text, no ELF header here\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A Go program for another architecture: tiny, so the cross build only
	// compiles the runtime.
	arm := filepath.Join(dir, "arm64")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", arm, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building arm64 program: %v\n%s", err, msg)
	}

	trueBin, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("no true(1) to use as a non-Go ELF: %v", err)
	}

	for _, tc := range []struct {
		path string
		want error
	}{
		{trueBin, ErrNotGo},
		{text, ErrNotELF},
		{arm, ErrUnsupportedArch},
		{filepath.Join(dir, "missing"), fs.ErrNotExist},
	} {
		b, err := Open(tc.path)
		if err == nil {
			b.Close()
			t.Errorf("Open(%s) succeeded, want %v", tc.path, tc.want)
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("Open(%s) = %v, want errors.Is %v", tc.path, err, tc.want)
		}
		if !strings.Contains(err.Error(), tc.path) {
			t.Errorf("Open(%s) error %q does not name the file", tc.path, err)
		}
	}
}

func TestFuncAndRetOffsets(t *testing.T) {
	// The unstripped build is the reference: the Go disassembler needs its
	// symbol table. Every other variant must agree with it in count.
	ref := openFixture(t, variants[0])
	refFn, err := ref.Func(fixtureFunc)
	if err != nil {
		t.Fatal(err)
	}
	refRets, err := ref.RetOffsets(refFn)
	if err != nil {
		t.Fatal(err)
	}
	// classify has four return statements; the compiler keeps one RET per
	// return path today. Fewer than two would make this test meaningless.
	if len(refRets) < 2 {
		t.Fatalf("RetOffsets found %d RETs in %s, want several", len(refRets), fixtureFunc)
	}

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			b := openFixture(t, v)
			fn, err := b.Func(fixtureFunc)
			if err != nil {
				t.Fatal(err)
			}
			if fn.Name != fixtureFunc || fn.End <= fn.Addr {
				t.Fatalf("Func = %+v", fn)
			}
			off, err := b.FileOffset(fn.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if off != fn.Offset {
				t.Errorf("FileOffset(%#x) = %#x, Func.Offset = %#x", fn.Addr, off, fn.Offset)
			}
			if !v.stripped {
				if addr, ok := b.Symbol(fixtureFunc); !ok || addr != fn.Addr {
					t.Errorf("Symbol(%s) = %#x, %v; Func.Addr = %#x", fixtureFunc, addr, ok, fn.Addr)
				}
			} else if _, ok := b.Symbol(fixtureFunc); ok {
				t.Errorf("Symbol(%s) found in a stripped binary", fixtureFunc)
			}

			rets, err := b.RetOffsets(fn)
			if err != nil {
				t.Fatal(err)
			}
			if len(rets) != len(refRets) {
				t.Errorf("RetOffsets found %d RETs, the plain build has %d", len(rets), len(refRets))
			}
			data, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rets {
				if r < fn.Offset || r >= fn.Offset+(fn.End-fn.Addr) {
					t.Errorf("RET offset %#x outside %s at %#x", r, fixtureFunc, fn.Offset)
				}
				if data[r] != 0xC3 {
					t.Errorf("byte at file offset %#x is %#x, want RET (0xc3)", r, data[r])
				}
			}

			if v.stripped {
				tb := openFixture(t, variants[v.twin])
				for _, name := range []string{fixtureFunc, "net/http.(*conn).serve"} {
					want, err := tb.Func(name)
					if err != nil {
						t.Fatal(err)
					}
					got, err := b.Func(name)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Errorf("Func(%s) = %+v, unstripped %s has %+v", name, got, variants[v.twin].name, want)
					}
				}
				twinRets, err := tb.RetOffsets(mustFunc(t, tb, fixtureFunc))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(rets, twinRets) {
					t.Errorf("RetOffsets = %#x, unstripped %s has %#x", rets, variants[v.twin].name, twinRets)
				}
			} else {
				var want []uint64
				for _, addr := range objdumpRets(t, b.Path, fixtureFunc) {
					o, err := b.FileOffset(addr)
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, o)
				}
				if !slices.Equal(rets, want) {
					t.Errorf("RetOffsets = %#x, go tool objdump says %#x", rets, want)
				}
			}
		})
	}
}

func mustFunc(t *testing.T, b *Binary, name string) Func {
	t.Helper()
	fn, err := b.Func(name)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

func TestFuncMissing(t *testing.T) {
	b := openFixture(t, variants[1])
	_, err := b.Func("main.doesNotExist")
	if !errors.Is(err, ErrNoFunc) || !strings.Contains(err.Error(), "main.doesNotExist") {
		t.Fatalf("Func(missing) = %v, want ErrNoFunc naming the function", err)
	}
}

func TestRetOffsetsServerFunctions(t *testing.T) {
	// The functions the HTTP server probe attaches to: large, with many
	// return paths and instructions the fixture's classify does not use.
	b := openFixture(t, variants[1])
	for _, name := range []string{
		"net/http.serverHandler.ServeHTTP",
		"net/http.(*conn).serve",
		"net/http.(*response).WriteHeader",
	} {
		fn, err := b.Func(name)
		if err != nil {
			t.Errorf("Func(%s): %v", name, err)
			continue
		}
		if _, err := b.RetOffsets(fn); err != nil {
			t.Errorf("RetOffsets(%s): %v", name, err)
		}
	}

	// Every compiled function of the packages the probes instrument must
	// decode. (Hand-written assembly elsewhere, e.g. AVX-512 crypto, can
	// use instructions x86asm does not know; no probe targets it.)
	idx, err := b.loadPcln()
	if err != nil {
		t.Fatal(err)
	}
	defer idx.close()
	var names []string
	idx.names(func(name string) { names = append(names, name) })
	checked := 0
	for _, name := range names {
		if !strings.HasPrefix(name, "net/http.") && !strings.HasPrefix(name, "net/url.") {
			continue
		}
		fn, err := b.Func(name)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		_, err = b.RetOffsets(fn)
		if err != nil && !errors.Is(err, ErrNoRet) {
			t.Errorf("RetOffsets(%s): %v", name, err)
		}
	}
	if checked < 100 {
		t.Errorf("only %d net/http and net/url functions in the fixture; is the server still linked?", checked)
	}
}

func TestFindRetsDecodeError(t *testing.T) {
	// The finder must refuse what it cannot decode, not step over it:
	// an opcode invalid in 64-bit mode (x86asm errors), an undefined
	// two-byte opcode and ENDBR64 (x86asm returns a bare prefix for both),
	// and an instruction cut off at the end.
	for _, code := range [][]byte{
		{0x90, 0x06, 0xc3},
		{0x90, 0x0f, 0xff},
		{0xf3, 0x0f, 0x1e, 0xfa, 0xc3},
		{0xc3, 0x48},
	} {
		if got, err := findRets(code); err == nil {
			t.Errorf("findRets(% x) = %v, want a decode error", code, got)
		}
	}
	got, err := findRets([]byte{0x90, 0xc3, 0xcc, 0xcc, 0x48, 0x89, 0xd9, 0xc3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{1, 7}) {
		t.Fatalf("findRets = %v, want [1 7]", got)
	}
}

func TestFileOffsetOutsideSegments(t *testing.T) {
	b := openFixture(t, variants[0])
	if _, err := b.FileOffset(0x10); err == nil {
		t.Error("FileOffset(0x10) succeeded")
	}
}

func TestSymbolItab(t *testing.T) {
	b := openFixture(t, variants[0])
	const itab = "go:itab.*net/http.response,net/http.ResponseWriter"
	if _, ok := b.Symbol(itab); !ok {
		t.Errorf("Symbol(%q) not found", itab)
	}
}

func TestFieldOffset(t *testing.T) {
	b := openFixture(t, variants[0])
	for _, tc := range []struct {
		typ, field string
		want       uintptr
	}{
		{"net/http.Request", "Method", unsafe.Offsetof(http.Request{}.Method)},
		{"net/http.Request", "URL", unsafe.Offsetof(http.Request{}.URL)},
		{"net/http.Request", "Host", unsafe.Offsetof(http.Request{}.Host)},
		{"net/http.Request", "RemoteAddr", unsafe.Offsetof(http.Request{}.RemoteAddr)},
		{"net/http.Request", "Pattern", unsafe.Offsetof(http.Request{}.Pattern)},
		{"net/url.URL", "Path", unsafe.Offsetof(url.URL{}.Path)},
		{"net/url.URL", "RawQuery", unsafe.Offsetof(url.URL{}.RawQuery)},
	} {
		got, err := b.FieldOffset(tc.typ, tc.field)
		if err != nil {
			t.Errorf("FieldOffset(%s, %s): %v", tc.typ, tc.field, err)
			continue
		}
		if got != uint64(tc.want) {
			t.Errorf("FieldOffset(%s, %s) = %d, unsafe.Offsetof says %d", tc.typ, tc.field, got, tc.want)
		}
	}
	// The values the platform notes record for the current toolchain, kept
	// as a second check that the DWARF walk reads the right attribute.
	if m, _ := b.FieldOffset("net/http.Request", "Method"); m != 0 {
		t.Errorf("Request.Method at %d, want 0", m)
	}
	if u, _ := b.FieldOffset("net/http.Request", "URL"); u != 16 {
		t.Errorf("Request.URL at %d, want 16", u)
	}
	// Unexported runtime and internal types are what make DWARF necessary.
	for _, tc := range [][2]string{{"runtime.g", "goid"}, {"internal/poll.FD", "Sysfd"}, {"net.netFD", "raddr"}, {"net/http.response", "req"}} {
		if _, err := b.FieldOffset(tc[0], tc[1]); err != nil {
			t.Errorf("FieldOffset(%s, %s): %v", tc[0], tc[1], err)
		}
	}

	if _, err := b.FieldOffset("net/http.NoSuchType", "X"); !errors.Is(err, ErrNoType) {
		t.Errorf("missing type: %v, want ErrNoType", err)
	}
	if _, err := b.FieldOffset("net/http.Request", "NoSuchField"); !errors.Is(err, ErrNoField) {
		t.Errorf("missing field: %v, want ErrNoField", err)
	}
	s := openFixture(t, variants[1])
	if _, err := s.FieldOffset("net/http.Request", "Method"); !errors.Is(err, ErrNoDWARF) {
		t.Errorf("stripped binary: %v, want ErrNoDWARF", err)
	}
}

func BenchmarkFieldOffsetCached(b *testing.B) {
	bin, err := Open(buildFixture(b, variants[0]))
	if err != nil {
		b.Fatal(err)
	}
	defer bin.Close()
	if _, err := bin.FieldOffset("runtime.g", "goid"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := bin.FieldOffset("net/http.Request", "URL"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEntryOffset(t *testing.T) {
	b := openFixture(t, variants[1])
	// ServeHTTP has a frame and so a stack check: the probe goes on its JLS,
	// a few bytes in, where the byte is a conditional jump opcode.
	fn, err := b.Func("net/http.serverHandler.ServeHTTP")
	if err != nil {
		t.Fatal(err)
	}
	off, err := b.EntryOffset(fn)
	if err != nil {
		t.Fatal(err)
	}
	if off <= fn.Offset || off > fn.Offset+16 {
		t.Fatalf("entry offset %#x, want a few bytes after the function's first byte %#x", off, fn.Offset)
	}
	f, err := os.Open(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	op := make([]byte, 2)
	if _, err := f.ReadAt(op, int64(off)); err != nil {
		t.Fatal(err)
	}
	if op[0] != 0x76 && !(op[0] == 0x0f && op[1] == 0x86) {
		t.Errorf("byte at the entry offset is % x, want JBE (76 or 0f 86)", op)
	}
}

// The entry probe's JBE is emulated, a RET and a first instruction are
// single-stepped.
func TestProbedInstruction(t *testing.T) {
	b := openFixture(t, variants[1])
	fn, err := b.Func("net/http.serverHandler.ServeHTTP")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := b.EntryOffset(fn)
	if err != nil {
		t.Fatal(err)
	}
	rets, err := b.RetOffsets(fn)
	if err != nil || len(rets) == 0 {
		t.Fatalf("RETs of %s: %d, %v", fn.Name, len(rets), err)
	}
	for _, tc := range []struct {
		off      uint64
		text     string
		emulated bool
	}{
		{entry, "JBE", true},
		{rets[0], "RET", false},
		{fn.Offset, "CMP", false},
	} {
		got, err := b.ProbedInstruction(tc.off)
		if err != nil || got.Text != tc.text || got.Emulated != tc.emulated {
			t.Errorf("at %#x: %+v, %v; want %s, emulated %v", tc.off, got, err, tc.text, tc.emulated)
		}
	}
}

func TestStackCheckJump(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		off  uint64
		ok   bool
	}{
		// CMPQ SP, 0x10(R14); JBE +0x20
		{"small frame", []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x20}, 4, true},
		// LEAQ -0x100(SP), R12; CMPQ R12, 0x10(R14); JBE near
		{"large frame", []byte{0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0x00, 0x00, 0x00}, 12, true},
		// MOVQ AX, BX: a leaf without a stack check.
		{"leaf", []byte{0x48, 0x89, 0xc3, 0xc3}, 0, false},
		// CMPQ SP, 0x10(R14) followed by something other than JBE.
		{"no jump", []byte{0x49, 0x3b, 0x66, 0x10, 0x90}, 0, false},
		{"truncated", []byte{0x49, 0x3b}, 0, false},
	} {
		off, ok := stackCheckJump(tc.code)
		if ok != tc.ok || off != tc.off {
			t.Errorf("%s: got %d, %v; want %d, %v", tc.name, off, ok, tc.off, tc.ok)
		}
	}
}

// Modules come from the build information, stripped binaries included: the
// fixture links golang.org/x/arch at the version this module requires.
func TestModuleVersion(t *testing.T) {
	const module = "golang.org/x/arch"
	root, err := gobintest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module)
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	want := strings.TrimSpace(string(out))
	path := fixtures.Build(t, "droppedtype-stripped", "./tests/testdata/droppedtype", []string{"CGO_ENABLED=0"}, "-ldflags=-s -w")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if v, ok := b.ModuleVersion(module); !ok || v != want {
		t.Errorf("ModuleVersion(%s) = %q, %v; want %q", module, v, ok, want)
	}
	if v, ok := b.ModuleVersion("example.com/not/linked"); ok {
		t.Errorf("ModuleVersion of a module not linked = %q", v)
	}
	if _, ok := b.Modules["github.com/zerotrace/zerotrace"]; !ok {
		t.Errorf("the main module is missing from %v", b.Modules)
	}
}
