// Package sites checks, without privileges, that every function the probes
// attach to is where they expect it in real binaries of the supported Go
// releases, with and without DWARF and stripped: found through pclntab,
// not inlined away, its entry probe on an instruction the kernel emulates
// (the stack-check jump), and the frames read at deferred calls recognised.
package sites

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/registry"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// The toolchains whose binaries are checked: the one running the tests
// (go1.26.8 here) and the newest go1.27.
var toolchains = []string{"", "go1.27.4"}

// Linker flags: DWARF, no DWARF, stripped.
var ldflags = []string{"", "-w", "-s -w"}

// present are the probed functions each program must have: what it uses.
var present = map[string][]string{
	"sampleapp": {
		"net/http.serverHandler.ServeHTTP",
		"net/http.(*connReader).abortPendingRead",
		"net/http.checkConnErrorWriter.Write",
		"net/http.(*conn).hijackLocked",
		"net/http.(*connReader).releaseConn",
		"net/http.(*Transport).roundTrip",
		"net/http.(*Transport).roundTrip.func1",
		"net/http.(*persistConn).roundTrip",
		"net/http.Header.writeSubset",
		"net/http.persistConnWriter.Write",
		"net/http.(*persistConn).Read",
		"runtime.newproc1",
	},
	"dbapp": {
		"database/sql.(*DB).queryDC",
		"database/sql.(*DB).execDC",
		"database/sql.(*Stmt).QueryContext",
		"database/sql.(*Stmt).ExecContext",
		"database/sql.(*Rows).initContextClose",
		"database/sql.(*driverConn).releaseConn-fm",
		"database/sql.(*Tx).closemuRUnlockRelease-fm",
		"database/sql.(*DB).execDC.func1",
		"database/sql.(*Stmt).QueryContext.deferwrap1",
		"database/sql.(*Stmt).ExecContext.deferwrap1",
	},
}

// Either name of the HTTP/2 server's handlerDone and of the alternate
// HTTP/2 round tripper, by Go release.
var presentOneOf = map[string][][]string{
	"sampleapp": {
		{"net/http.(*http2responseWriter).handlerDone", "net/http/internal/http2.(*responseWriter).handlerDone"},
		{"net/http.http2noDialH2RoundTripper.RoundTrip", "net/http.http2RoundTripper.RoundTrip"},
	},
}

func TestProbeSites(t *testing.T) {
	for _, tc := range toolchains {
		for _, prog := range []string{"sampleapp", "dbapp"} {
			var dwarfCode map[string][]byte
			for _, fl := range ldflags {
				name := fmt.Sprintf("%s/%s/%s", prog, orLocal(tc), orNone(fl))
				t.Run(name, func(t *testing.T) {
					path := testenv.BuildSampleAppWith(t, tc, fl)
					if prog == "dbapp" {
						path = testenv.BuildDBAppWith(t, tc, fl)
					}
					code := checkSites(t, path, prog, fl == "")
					if fl == "" {
						dwarfCode = code
						return
					}
					// Without DWARF or symbols the code is the same,
					// up to the distances to data (the build
					// information, which names the linker flags, moves
					// it): what was not inlined with DWARF is not
					// inlined here either.
					for sym, c := range code {
						if want, ok := dwarfCode[sym]; ok && !slices.Equal(shape(c), shape(want)) {
							t.Errorf("%s: its code differs from the build with DWARF", sym)
						}
					}
				})
			}
		}
	}
}

// checkSites checks every probed function of the registered probes that
// the binary at path has, and returns each one's code. withDWARF: the
// binary's DWARF also says whether any was inlined somewhere.
func checkSites(t *testing.T, path, prog string, withDWARF bool) map[string][]byte {
	b, err := gobin.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var inlined map[string]bool
	if withDWARF {
		inlined = inlinedFuncs(t, path)
	}
	found := map[string]bool{}
	code := map[string][]byte{}
	for _, p := range registry.Probes() {
		_, decl, err := p.Spec()
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range decl.Uprobes {
			fn, err := b.Func(u.Symbol)
			if err != nil {
				continue
			}
			found[u.Symbol] = true
			code[u.Symbol] = read(t, path, b, fn)
			if inlined[u.Symbol] {
				t.Errorf("%s: %s is inlined somewhere: a probe on its body misses those calls", p.Name(), u.Symbol)
			}
			if u.Entry != nil && u.At == nil {
				checkEntry(t, b, fn)
			}
			if u.At != nil {
				// A site inside the function, found in its code: on an
				// instruction the kernel emulates.
				site, err := u.At(b, fn)
				if err != nil {
					t.Errorf("%s: no site in %s: %v", p.Name(), u.Symbol, err)
				} else if in, err := b.ProbedInstruction(site.Offset); err != nil || !in.Emulated {
					t.Errorf("%s: the site in %s is %s (%v), which the kernel single-steps", p.Name(), u.Symbol, in.Text, err)
				}
			}
			if u.Return != nil {
				rets, err := b.RetOffsets(fn)
				if err != nil || len(rets) == 0 {
					t.Errorf("%s: the RETs of %s: %d, %v", p.Name(), u.Symbol, len(rets), err)
				}
				t.Logf("%s: %d RETs of %s (single-stepped when attached)", p.Name(), len(rets), u.Symbol)
			}
		}
		for _, fr := range decl.Frames {
			checkFrame(t, b, fr)
		}
	}
	for _, sym := range present[prog] {
		if !found[sym] {
			t.Errorf("%s has no %s", prog, sym)
		}
	}
	for _, names := range presentOneOf[prog] {
		if !slices.ContainsFunc(names, func(s string) bool { return found[s] }) {
			t.Errorf("%s has none of %v", prog, names)
		}
	}
	return code
}

// checkEntry: the entry probe goes on the stack-check JBE, which the
// kernel emulates in place (no single step).
func checkEntry(t *testing.T, b *gobin.Binary, fn gobin.Func) {
	t.Helper()
	off, err := b.EntryOffset(fn)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, int64(off)); err != nil {
		t.Fatal(err)
	}
	in, err := x86asm.Decode(buf, 64)
	if err != nil || in.Op != x86asm.JBE {
		t.Errorf("%s: the entry probe at +%#x is on %v, not the stack-check JBE the kernel emulates", fn.Name, off-fn.Offset, in)
		return
	}
	t.Logf("%s: entry probe on %v at +%#x (emulated)", fn.Name, in, off-fn.Offset)
}

// checkFrame: the slots a program reads at a deferred call are found.
func checkFrame(t *testing.T, b *gobin.Binary, fr probes.Frame) {
	t.Helper()
	fn, err := b.Func(fr.Symbol)
	if err != nil {
		return // not linked: nothing to read
	}
	slots, err := b.ResultSlots(fn, len(fr.Results))
	if err != nil {
		t.Errorf("the frame of %s: %v (its spans would fall back to its RETs)", fr.Symbol, err)
		return
	}
	msg := fmt.Sprintf("%s: result slots %#x", fr.Symbol, slots)
	if fr.Captured != nil {
		d, err := b.Func(fr.Deferred)
		if err != nil {
			t.Errorf("%s: %v", fr.Symbol, err)
			return
		}
		k, err := b.ClosureSlot(fn, d, slots[fr.CapturedWord])
		if err != nil {
			t.Errorf("the closure of %s: %v", fr.Deferred, err)
			return
		}
		msg += fmt.Sprintf(", %s holds the slot's address at +%#x", fr.Deferred, k)
	}
	t.Log(msg)
}

func read(t *testing.T, path string, b *gobin.Binary, fn gobin.Func) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := make([]byte, fn.End-fn.Addr)
	if _, err := f.ReadAt(c, int64(fn.Offset)); err != nil {
		t.Fatal(err)
	}
	return c
}

// shape is code as its instructions, with the displacements of RIP-relative
// operands and of jumps and calls left out: they change when the data or
// the other functions move, the instructions do not.
func shape(code []byte) []string {
	var out []string
	for len(code) > 0 {
		in, err := x86asm.Decode(code, 64)
		if err != nil {
			return append(out, fmt.Sprintf("undecodable % x", code[:1]))
		}
		s := fmt.Sprintf("%v/%d", in.Op, in.Len)
		for _, a := range in.Args {
			switch a := a.(type) {
			case nil:
			case x86asm.Rel:
				s += " rel"
			case x86asm.Mem:
				if a.Base == x86asm.RIP {
					a.Disp = 0
				}
				s += " " + a.String()
			default:
				s += " " + a.String()
			}
		}
		out = append(out, s)
		code = code[in.Len:]
	}
	return out
}

// inlinedFuncs names every function DWARF records as inlined somewhere.
func inlinedFuncs(t *testing.T, path string) map[string]bool {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	d, err := ef.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	names := map[dwarf.Offset]string{}
	type inlined struct {
		origin dwarf.Offset
		in     string // the function it was inlined into
	}
	var origins []inlined
	cur := ""
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagSubprogram:
			if n, ok := e.Val(dwarf.AttrName).(string); ok {
				names[e.Offset] = n
				cur = n
			}
		case dwarf.TagInlinedSubroutine:
			if o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
				origins = append(origins, inlined{o, cur})
			}
		}
	}
	out := map[string]bool{}
	for _, o := range origins {
		name := names[o.origin]
		if wrapperOnly[name] && o.in == pointerWrapper(name) {
			continue
		}
		out[name] = true
	}
	return out
}

// wrapperOnly are value-receiver methods the compiler inlines into their
// own pointer-receiver wrapper, which the program never calls: net/http
// hands bufio the persistConnWriter value, so every write goes through
// the value method itself.
var wrapperOnly = map[string]bool{"net/http.persistConnWriter.Write": true}

// pointerWrapper is the name of the pointer-receiver wrapper of a
// value-receiver method: "pkg.(*T).M" for "pkg.T.M".
func pointerWrapper(method string) string {
	dot := strings.LastIndexByte(method, '.')
	if dot < 0 {
		return ""
	}
	typeDot := strings.LastIndexByte(method[:dot], '.')
	if typeDot < 0 {
		return ""
	}
	return method[:typeDot+1] + "(*" + method[typeDot+1:dot] + ")" + method[dot:]
}

func orLocal(tc string) string {
	if tc == "" {
		return "local"
	}
	return tc
}

func orNone(fl string) string {
	if fl == "" {
		return "dwarf"
	}
	return fl
}
