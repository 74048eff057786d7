package gobin

import (
	"errors"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// leanStructNames are structs the probes read, of the runtime, the standard
// library and the fixture, plus one that exists nowhere.
var leanStructNames = []string{
	"runtime.g", "net/http.Request", "net/http.response", "net/http.conn", "net/url.URL",
	"internal/poll.FD", "net.netFD", "net.TCPAddr", "internal/runtime/maps.Map",
	"database/sql.driverConn", "net/http.Transport", "main.doesNotExist",
}

// The lean DWARF walk finds exactly what debug/dwarf finds, field for
// field, with internal and external linking (where C units come first and
// may use other forms).
func TestLeanStructsAgreeWithDebugDWARF(t *testing.T) {
	for _, v := range []variant{variants[0], variants[4]} {
		t.Run(v.name, func(t *testing.T) {
			b := openFixture(t, v)
			wanted := map[string]bool{}
			for _, n := range leanStructNames {
				wanted[n] = true
			}
			lean, err := b.leanStructs(wanted)
			if err != nil {
				t.Fatalf("lean walk: %v", err)
			}
			std, err := b.stdStructs(wanted)
			if err != nil {
				t.Fatal(err)
			}
			if len(lean) < 8 {
				t.Errorf("lean walk found only %v", slices.Sorted(maps.Keys(lean)))
			}
			for _, n := range leanStructNames {
				if !maps.Equal(lean[n], std[n]) {
					t.Errorf("%s: lean walk %v, debug/dwarf %v", n, lean[n], std[n])
				}
			}
			if _, ok := lean["main.doesNotExist"]; ok {
				t.Error("lean walk found a struct that does not exist")
			}
		})
	}
}

// A binary opened once answers again after Release, from what it kept or
// by building its tables again.
func TestRelease(t *testing.T) {
	b := openFixture(t, variants[0])
	const itab = "go:itab.*net/http.response,net/http.ResponseWriter"
	addr, ok := b.Symbol(itab)
	if !ok {
		t.Fatalf("no symbol %s", itab)
	}
	if err := b.LoadStructs("net/http.Request", "runtime.g"); err != nil {
		t.Fatal(err)
	}
	before := mustFunc(t, b, fixtureFunc)
	b.IndexItabs()
	b.Release()
	if b.pcln != nil {
		t.Fatal("Release kept the pcln index")
	}
	if got := mustFunc(t, b, fixtureFunc); got != before {
		t.Errorf("Func after Release = %+v, before %+v", got, before)
	}
	if b.pcln != nil {
		t.Error("a function asked for before was looked up again")
	}
	if _, err := b.Func("net/http.(*conn).serve"); err != nil {
		t.Errorf("Func of a new name after Release: %v", err)
	}
	if off, err := b.FieldOffset("net/http.Request", "URL"); err != nil || off != 16 {
		t.Errorf("FieldOffset after Release = %d, %v", off, err)
	}
	if name, ok := b.ItabType(addr); !ok || name != "*net/http.response" {
		t.Errorf("ItabType(%#x) = %q, %v, want *net/http.response", addr, name, ok)
	}
	if _, ok := b.ItabType(addr + 1); ok {
		t.Error("ItabType of an address between itabs answered")
	}
	if _, err := b.Func("main.doesNotExist"); !errors.Is(err, ErrNoFunc) || !strings.Contains(err.Error(), "main.doesNotExist") {
		t.Errorf("Func(missing) after Release = %v", err)
	}
}

// Looking up the structs and functions the probes need allocates little:
// the sections are streamed or mapped, never copied, and only what was
// asked for is kept. (Parsing all of this binary's DWARF and pcln table
// allocated about 40 MB.)
func TestLookupsAllocateLittle(t *testing.T) {
	b := openFixture(t, variants[0])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := b.LoadStructs(leanStructNames...); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Func(fixtureFunc); err != nil {
		t.Fatal(err)
	}
	b.IndexItabs()
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("looking up %d structs and a function allocated %d bytes", len(leanStructNames), n)
	}
}
