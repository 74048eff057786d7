package registry

import (
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/gobin/gobintest"
	"github.com/zerotrace/zerotrace/probes/nethttp/server"
	"github.com/zerotrace/zerotrace/probes/offsets"
	"github.com/zerotrace/zerotrace/probes/openssl"
	"github.com/zerotrace/zerotrace/probes/phases"
	"github.com/zerotrace/zerotrace/probes/syscalls"
)

// Every `volatile const` of every registered object is one the loader sets:
// a constant added to a program and forgotten in its declaration would
// stay zero and silently read the wrong offset.
func TestEveryConstantIsSet(t *testing.T) {
	for _, p := range Probes() {
		spec, decl, err := p.Spec()
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, v := range decl.Constants() {
			set[v.Name] = true
		}
		for _, name := range events.SharedConstants() {
			set[name] = true
		}
		n := 0
		for name, v := range spec.Variables {
			if !v.Constant() {
				continue
			}
			n++
			if !set[name] {
				t.Errorf("%s: constant %s is not set by the declaration", p.Name(), name)
			}
			if v.Size() == 0 || v.Size() > 8 {
				t.Errorf("%s: constant %s has %d bytes: the loader sets integers of 1 to 8", p.Name(), name, v.Size())
			}
		}
		if n == 0 {
			t.Errorf("%s: no constant found: is the spec empty?", p.Name())
		}
	}
}

// Every program of every registered object is placed by its declaration,
// and each read's constant receives one field only.
func TestEveryProgramIsPlaced(t *testing.T) {
	for _, p := range Probes() {
		spec, decl, err := p.Spec()
		if err != nil {
			t.Fatal(err)
		}
		placed := decl.Programs()
		for name, ps := range spec.Programs {
			if !slices.Contains(placed, ps) {
				t.Errorf("%s: program %s goes nowhere", p.Name(), name)
			}
		}
		fieldOf := map[*ebpf.VariableSpec]offsets.Field{}
		for _, r := range decl.Reads {
			if f, ok := fieldOf[r.Offset]; ok && f != r.Field {
				t.Errorf("%s: %s gets the offsets of both %s and %s", p.Name(), r.Offset.Name, f, r.Field)
			}
			fieldOf[r.Offset] = r.Field
			if r.Size == 0 {
				t.Errorf("%s: %s is read with no size", p.Name(), r.Field)
			}
		}
	}
}

// The bundled offsets table has every standard-library field a registered
// probe reads, for the newest Go version it records (a field read under
// several names, Read.Alt, under one of them): otherwise a probe gained a
// field and the table was not regenerated (scripts/gen-offsets).
func TestTableHasEveryField(t *testing.T) {
	vs := offsets.Versions()
	newest := vs[len(vs)-1]
	for _, p := range Probes() {
		_, decl, err := p.Spec()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range decl.Reads {
			if r.Field.Module != offsets.Std {
				continue
			}
			var errs []error
			for _, f := range r.Fields() {
				if _, err := offsets.Lookup(newest, f); err != nil {
					errs = append(errs, err)
				}
			}
			if len(errs) == len(r.Fields()) {
				t.Errorf("%v; regenerate the table with: go run ./scripts/gen-offsets", errors.Join(errs...))
			}
		}
	}
}

// Every record type number is used once: the reader dispatches by it.
func TestRecordTypesAreUnique(t *testing.T) {
	seen := map[uint8]string{}
	var all []events.Record
	for _, p := range Probes() {
		all = append(all, p.Records()...)
	}
	all = append(all, syscalls.Records()...)
	all = append(all, phases.Record)
	all = append(all, openssl.Records()...)
	for _, r := range all {
		if r.Type == 0 {
			t.Errorf("%s has type 0, which no record may have (a zeroed header)", r.Name)
		}
		if other, ok := seen[r.Type]; ok {
			t.Errorf("record type %d is both %s and %s", r.Type, other, r.Name)
		}
		seen[r.Type] = r.Name
	}
	table, err := Records()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(table.Types()); got != len(all) {
		t.Errorf("the table has %d record types, the registry %d", got, len(all))
	}
}

// The reader rejects what it cannot decode, saying why.
func TestDecodeRejectsBadRecords(t *testing.T) {
	table, err := Records()
	if err != nil {
		t.Fatal(err)
	}
	d := &events.Decoder{Clock: events.NewClock()}
	rec := server.Probe.Records()[0]
	full := make([]byte, rec.MinSize)
	full[0] = rec.Type

	var de *events.DecodeError
	if _, err := table.Decode(full[:8], d); !errors.As(err, &de) || de.Kind != "short" {
		t.Errorf("short record: %v", err)
	}
	if _, err := table.Decode(full[:100], d); !errors.As(err, &de) || de.Kind != "size" {
		t.Errorf("truncated record: %v", err)
	}
	full[0] = 200
	if _, err := table.Decode(full, d); !errors.As(err, &de) || de.Kind != "unknown_type" {
		t.Errorf("unknown type: %v", err)
	}
	full[0] = rec.Type
	if _, err := table.Decode(full, d); err != nil {
		t.Errorf("a whole record: %v", err)
	}
}

// Adding a Go library probe stays small: its folder pair, probes/<lib>/ (the
// declaration, gen.go, the record's decoder) and bpf/<lib>/ (the C program
// and its record), and one line in Probes. Nothing else in the agent refers
// to it, it refers to no other probe, and its C includes only the common
// headers and its own library's.
func TestProbesAreSelfContained(t *testing.T) {
	root, err := gobintest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/zerotrace/zerotrace/"
	importers := importersOf(t, root)
	registry, err := os.ReadFile(filepath.Join(root, "probes/registry/registry.go"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]bool{}
	for _, p := range Probes() {
		pkg := p.Package()
		lib, ok := strings.CutPrefix(pkg, module+"probes/")
		if !ok {
			t.Errorf("%s: package %s is not under probes/", p.Name(), pkg)
			continue
		}
		pkgs[pkg] = true
		dir := filepath.Join(root, "probes", lib)

		// The C program is in the mirror folder under bpf/.
		src := generatedFrom(t, filepath.Join(dir, "gen.go"))
		csrc, err := filepath.Rel(root, filepath.Join(dir, src))
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(csrc) != filepath.Join("bpf", lib) {
			t.Errorf("%s: its C program %s is not in bpf/%s/", p.Name(), csrc, lib)
		}
		for _, inc := range includes(t, filepath.Join(root, csrc)) {
			d := filepath.Dir(inc)
			if d != "common" && !strings.HasPrefix(lib+"/", d+"/") {
				t.Errorf("%s: %s includes %s, another library's", p.Name(), csrc, inc)
			}
		}
		if len(p.Records()) > 0 && !slices.Contains(includes(t, filepath.Join(root, csrc)), lib+"/record.h") {
			t.Errorf("%s: its record is not in bpf/%s/record.h", p.Name(), lib)
		}

		// Only the registry refers to it, in one line.
		for _, file := range importers[pkg] {
			if file != "probes/registry/registry.go" {
				t.Errorf("%s: %s imports %s: nothing but the registry may", p.Name(), file, pkg)
			}
		}
		name := filepath.Base(lib) + ".Probe"
		if n := strings.Count(string(registry), name); n != 1 {
			t.Errorf("%s: the registry names %s %d times, want once", p.Name(), name, n)
		}
	}
	// And no probe imports another.
	for pkg := range pkgs {
		for _, file := range importers[pkg] {
			if pkgs[module+filepath.Dir(file)] {
				t.Errorf("%s imports %s: probes do not depend on each other", file, pkg)
			}
		}
	}
}

// importersOf maps each package of the module to the non-test Go files
// (relative to root) that import it.
func importersOf(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			out[p] = append(out[p], rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// generatedFrom returns the C source a gen.go compiles, relative to its
// folder: the last argument of its go:generate line.
func generatedFrom(t *testing.T, gen string) string {
	t.Helper()
	data, err := os.ReadFile(gen)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "//go:generate" && strings.HasSuffix(f[len(f)-1], ".c") {
			return f[len(f)-1]
		}
	}
	t.Fatalf("%s compiles no C source", gen)
	return ""
}

// includes lists the local (quoted) includes of a C file, as written.
func includes(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), `#include "`); ok {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(rest), `"`))
		}
	}
	return out
}
