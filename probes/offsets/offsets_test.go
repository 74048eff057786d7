package offsets

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/gobin/gobintest"
)

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

var (
	fieldA = Field{Struct: "pkg.T", Name: "A"}
	fieldB = Field{Struct: "pkg.T", Name: "B"}
	fieldC = Field{Struct: "pkg.T", Name: "C"} // only in newer patches
)

// testTable has a go1.26 line whose recorded patches agree, a go1.27 line
// whose patches disagree on fieldB, and fieldC appearing in go1.27.3.
var testTable = Table{
	"go1.26.0": {"pkg.T.A": 0, "pkg.T.B": 8},
	"go1.26.8": {"pkg.T.A": 0, "pkg.T.B": 8},
	"go1.27.0": {"pkg.T.A": 0, "pkg.T.B": 16},
	"go1.27.3": {"pkg.T.A": 0, "pkg.T.B": 24, "pkg.T.C": 32},
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name               string
		version            string
		required, optional []Field
		wantSource         string
		want               map[Field]uint64
	}{
		{
			name: "exact", version: "go1.26.8",
			required: []Field{fieldA, fieldB}, optional: []Field{fieldC},
			wantSource: "table go1.26.8",
			want:       map[Field]uint64{fieldA: 0, fieldB: 8},
		},
		{
			name: "exact with optional present", version: "go1.27.3",
			required: []Field{fieldA}, optional: []Field{fieldB, fieldC},
			wantSource: "table go1.27.3",
			want:       map[Field]uint64{fieldA: 0, fieldB: 24, fieldC: 32},
		},
		{
			name: "nearest patch", version: "go1.26.3",
			required:   []Field{fieldA, fieldB},
			wantSource: "table go1.26.8 (nearest patch for go1.26.3)",
			want:       map[Field]uint64{fieldA: 0, fieldB: 8},
		},
		{
			name: "newer patch than recorded", version: "go1.26.12",
			required:   []Field{fieldB},
			wantSource: "table go1.26.8 (nearest patch for go1.26.12)",
			want:       map[Field]uint64{fieldB: 8},
		},
		{
			// The go1.27 patches disagree on B but not on A: only the
			// requested fields matter.
			name: "nearest patch, agreeing subset", version: "go1.27.1",
			required:   []Field{fieldA},
			wantSource: "table go1.27.3 (nearest patch for go1.27.1)",
			want:       map[Field]uint64{fieldA: 0},
		},
		{
			name: "experiment suffix", version: "go1.26.8 X:nodwarf5",
			required:   []Field{fieldA},
			wantSource: `table go1.26.8 [binary reports "go1.26.8 X:nodwarf5"]`,
			want:       map[Field]uint64{fieldA: 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := testTable.lookup(tc.version, tc.required, tc.optional)
			if err != nil {
				t.Fatal(err)
			}
			if s.Source != tc.wantSource {
				t.Errorf("Source = %q, want %q", s.Source, tc.wantSource)
			}
			if len(s.offsets) != len(tc.want) {
				t.Errorf("resolved %v, want %v", s.offsets, tc.want)
			}
			for f, want := range tc.want {
				if got, ok := s.Get(f); !ok || got != want {
					t.Errorf("Get(%s) = %d, %v; want %d", f, got, ok, want)
				}
			}
		})
	}
}

func TestLookupErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		version  string
		required []Field
		optional []Field
		want     error
		wantMsg  string
	}{
		{
			name: "unknown minor", version: "go1.28.1", required: []Field{fieldA}, want: ErrUnknownVersion,
			wantMsg: "no struct offsets known for go1.28.1 and the binary has no DWARF (known: go1.26.0 … go1.27.3); rebuild it without -w or add the version with scripts/gen-offsets",
		},
		{
			name: "patches disagree", version: "go1.27.1", required: []Field{fieldA}, optional: []Field{fieldB}, want: ErrUnknownVersion,
			wantMsg: "the recorded go1.27 patches disagree on pkg.T.B",
		},
		{
			// Presence counts as part of the value: C is absent in
			// go1.27.0 and present in go1.27.3.
			name: "patches disagree on presence", version: "go1.27.2", optional: []Field{fieldC}, want: ErrUnknownVersion,
			wantMsg: "disagree on pkg.T.C",
		},
		{
			name: "devel", version: "devel go1.27-1234abcd Mon Jan 5 10:00:00 2026 +0000", required: []Field{fieldA}, want: ErrUnknownVersion,
			wantMsg: "development toolchain",
		},
		{
			name: "empty", version: "", required: []Field{fieldA}, want: ErrUnknownVersion,
			wantMsg: "records no Go version",
		},
		{
			name: "garbage", version: "gopher", required: []Field{fieldA}, want: ErrUnknownVersion,
			wantMsg: `unrecognised Go version "gopher"`,
		},
		{
			name: "required field absent", version: "go1.26.8", required: []Field{fieldC}, want: gobin.ErrNoField,
			wantMsg: "pkg.T.C",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := testTable.lookup(tc.version, tc.required, tc.optional)
			if err == nil {
				t.Fatalf("lookup succeeded with %q", s.Source)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want errors.Is %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
		})
	}

	// An empty table still answers with a usable message.
	_, err := Table{}.lookup("go1.26.8", []Field{fieldA}, nil)
	if !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "the table is empty") {
		t.Errorf("empty table: %v", err)
	}
}

func TestBundledTable(t *testing.T) {
	tbl, err := bundled()
	if err != nil {
		t.Fatal(err)
	}
	vs := Versions()
	if len(vs) == 0 {
		t.Fatal("bundled table is empty")
	}
	if !slices.Contains(vs, runtime.Version()) {
		t.Errorf("bundled table lacks the toolchain running this test, %s; add it with: go run ./scripts/gen-offsets -versions %s", runtime.Version(), runtime.Version())
	}
	// Generated, never hand-edited: re-encoding must reproduce the file.
	enc, err := tbl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, tableJSON) {
		t.Error("table.json is not in the generator's canonical form; regenerate it with scripts/gen-offsets")
	}
	// Every field of the list is recorded for the newest version, except
	// those a Go version may legitimately lack (none so far): otherwise the
	// list grew without regenerating the table.
	newest := tbl[vs[len(vs)-1]]
	for _, f := range All() {
		if _, ok := newest[f.String()]; !ok {
			t.Errorf("%s is not in the table for %s; regenerate it with: go run ./scripts/gen-offsets", f, vs[len(vs)-1])
		}
	}
}

func TestAllUnique(t *testing.T) {
	seen := map[Field]bool{}
	for _, f := range All() {
		if seen[f] {
			t.Errorf("%s listed twice", f)
		}
		seen[f] = true
		if f.Struct == "" || f.Name == "" || strings.Contains(f.Name, ".") {
			t.Errorf("malformed field %#v", f)
		}
	}
}

func TestFieldString(t *testing.T) {
	if got := RequestMethod.String(); got != "net/http.Request.Method" {
		t.Errorf("String() = %q", got)
	}
}

func openRetFinder(t *testing.T, name string, flags ...string) *gobin.Binary {
	t.Helper()
	path := fixtures.Build(t, name, gobintest.RetFinder, []string{"CGO_ENABLED=0"}, flags...)
	b, err := gobin.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.GoVersion != runtime.Version() {
		t.Fatalf("fixture built by %s, test runs on %s: is the go command on PATH the running toolchain?", b.GoVersion, runtime.Version())
	}
	return b
}

func TestResolveDWARFAgreesWithTable(t *testing.T) {
	b := openRetFinder(t, "plain")
	s, err := Resolve(b, All(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != "dwarf" {
		t.Fatalf("Source = %q, want dwarf", s.Source)
	}
	tbl, err := bundled()
	if err != nil {
		t.Fatal(err)
	}
	fromTable, err := tbl.lookup(runtime.Version(), All(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range All() {
		d, ok1 := s.Get(f)
		tv, ok2 := fromTable.Get(f)
		if !ok1 || !ok2 || d != tv {
			t.Errorf("%s: DWARF %d (%v), table %q %d (%v)", f, d, ok1, fromTable.Source, tv, ok2)
		}
	}
	// The compiler is the final authority for exported fields.
	for f, want := range map[Field]uintptr{
		RequestMethod:     unsafe.Offsetof(http.Request{}.Method),
		RequestURL:        unsafe.Offsetof(http.Request{}.URL),
		RequestPattern:    unsafe.Offsetof(http.Request{}.Pattern),
		RequestRemoteAddr: unsafe.Offsetof(http.Request{}.RemoteAddr),
		URLPath:           unsafe.Offsetof(url.URL{}.Path),
		URLRawQuery:       unsafe.Offsetof(url.URL{}.RawQuery),
	} {
		if got, _ := s.Get(f); got != uint64(want) {
			t.Errorf("%s = %d, unsafe.Offsetof says %d", f, got, want)
		}
	}
}

func TestResolveDWARFMissingFields(t *testing.T) {
	b := openRetFinder(t, "plain")
	noField := Field{Struct: "net/http.Request", Name: "NoSuchField"}
	noType := Field{Struct: "net/http.NoSuchType", Name: "X"}

	s, err := Resolve(b, []Field{RequestMethod}, []Field{noField, noType, RequestPattern})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(noField); ok {
		t.Error("absent optional field resolved")
	}
	if _, ok := s.Get(RequestPattern); !ok {
		t.Error("present optional field not resolved")
	}

	_, err = Resolve(b, []Field{RequestMethod, noField}, nil)
	if !errors.Is(err, gobin.ErrNoField) || !strings.Contains(err.Error(), noField.String()) {
		t.Errorf("missing required field: %v, want ErrNoField naming %s", err, noField)
	}
	_, err = Resolve(b, []Field{noType}, nil)
	if !errors.Is(err, gobin.ErrNoType) {
		t.Errorf("missing required type: %v, want ErrNoType", err)
	}
}

func TestResolveStrippedUsesTable(t *testing.T) {
	plain := openRetFinder(t, "plain")
	stripped := openRetFinder(t, "stripped", "-ldflags=-s -w")
	if stripped.HasDWARF {
		t.Fatal("stripped fixture has DWARF")
	}
	want, err := Resolve(plain, All(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Resolve(stripped, All(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Source, "table "+runtime.Version()) {
		t.Errorf("Source = %q, want the table entry for %s", s.Source, runtime.Version())
	}
	for _, f := range All() {
		got, ok := s.Get(f)
		w, _ := want.Get(f)
		if !ok || got != w {
			t.Errorf("%s: table says %d (%v), DWARF says %d", f, got, ok, w)
		}
	}
}

// openDroppedType builds the fixture whose linker dropped
// database/sql.dsnConnector and which links golang.org/x/arch.
func openDroppedType(t *testing.T, name string, flags ...string) *gobin.Binary {
	t.Helper()
	path := fixtures.Build(t, name, "./tests/testdata/droppedtype", []string{"CGO_ENABLED=0"}, flags...)
	b, err := gobin.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var (
	dsnConnectorDSN = Field{Struct: "database/sql.dsnConnector", Name: "dsn"}
	dbConnector     = Field{Struct: "database/sql.DB", Name: "connector"}
	// A field of a module: x86asm.Inst's Len, whose layout the module's
	// version decides.
	instLen = Field{Module: "golang.org/x/arch", Struct: "golang.org/x/arch/x86/x86asm.Inst", Name: "Len"}
)

// A type the linker dropped from DWARF comes from the table, for the
// binary's Go version; a field found nowhere says why.
func TestResolveFallsBackToTableForTypesMissingFromDWARF(t *testing.T) {
	b := openDroppedType(t, "droppedtype")
	if _, err := b.FieldOffset(dsnConnectorDSN.Struct, dsnConnectorDSN.Name); !errors.Is(err, gobin.ErrNoType) {
		t.Fatalf("the fixture's DWARF has %s (%v): the test needs a binary whose linker dropped it", dsnConnectorDSN.Struct, err)
	}
	noType := Field{Struct: "net/http.NoSuchType", Name: "X"}
	table := Table{runtime.Version(): {"database/sql.dsnConnector.dsn": 0, "database/sql.DB.connector": 99}}
	s, err := resolve(b, []Field{dbConnector, dsnConnectorDSN, noType}, table)
	if err != nil {
		t.Fatal(err)
	}
	if off, ok := s.Get(dsnConnectorDSN); !ok || off != 0 {
		t.Errorf("%s = %d, %v; want 0 from the table", dsnConnectorDSN, off, ok)
	}
	if off, _ := s.Get(dbConnector); off == 99 {
		t.Errorf("%s came from the table although DWARF has it", dbConnector)
	}
	want := "dwarf, and table " + runtime.Version() + " for 1 field not in DWARF"
	if s.Source != want {
		t.Errorf("Source = %q, want %q", s.Source, want)
	}
	if err := s.Missing(noType); !errors.Is(err, gobin.ErrNoType) || !strings.Contains(err.Error(), "not in the offsets table") {
		t.Errorf("Missing(%s) = %v, want ErrNoType and the table's word", noType, err)
	}
	if err := s.Missing(dsnConnectorDSN); err != nil {
		t.Errorf("Missing(%s) = %v for a resolved field", dsnConnectorDSN, err)
	}

	// With a table that lacks it too, the field is absent, and DWARF's
	// reason comes first.
	s, err = resolve(b, []Field{dbConnector, dsnConnectorDSN}, Table{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(dsnConnectorDSN); ok {
		t.Error("resolved a field that is in neither DWARF nor the table")
	}
	if err := s.Missing(dsnConnectorDSN); !errors.Is(err, gobin.ErrNoType) {
		t.Errorf("Missing = %v, want ErrNoType", err)
	}
	if s.Source != "dwarf" {
		t.Errorf("Source = %q, want dwarf", s.Source)
	}
}

// A module's fields are keyed by the module's version, which the binary's
// build information gives.
func TestResolveModuleFields(t *testing.T) {
	stripped := openDroppedType(t, "droppedtype-stripped", "-ldflags=-s -w")
	v, ok := stripped.ModuleVersion(instLen.Module)
	if !ok {
		t.Fatalf("the fixture records no version of %s: %v", instLen.Module, stripped.Modules)
	}
	key := instLen.Module + "@" + v
	table := Table{
		runtime.Version():              {"database/sql.DB.connector": 8},
		key:                            {instLen.String(): 24},
		instLen.Module + "@v0.0.1":     {instLen.String(): 99},
		"example.com/other@v1.0.0":     {"example.com/other.T.F": 1},
		instLen.Module + "@v0.0.1-rc1": {instLen.String(): 98},
	}
	other := Field{Module: "example.com/other", Struct: "example.com/other.T", Name: "F"}
	s, err := resolve(stripped, []Field{dbConnector, instLen, other}, table)
	if err != nil {
		t.Fatal(err)
	}
	if off, ok := s.Get(instLen); !ok || off != 24 {
		t.Errorf("%s = %d, %v; want 24 from %s", instLen, off, ok, key)
	}
	if off, ok := s.Get(dbConnector); !ok || off != 8 {
		t.Errorf("%s = %d, %v; want 8", dbConnector, off, ok)
	}
	if want := "table " + runtime.Version() + ", table " + key; s.Source != want {
		t.Errorf("Source = %q, want %q", s.Source, want)
	}
	if err := s.Missing(other); !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "example.com/other") {
		t.Errorf("Missing(%s) = %v, want ErrUnknownVersion naming the module", other, err)
	}

	// A version the table does not have is named, with the known ones.
	delete(table, key)
	s, err = resolve(stripped, []Field{instLen}, table)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Missing(instLen); !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), key+" (known: v0.0.1-rc1, v0.0.1)") {
		t.Errorf("Missing(%s) = %v", instLen, err)
	}
	if got := table.Versions(); !slices.Equal(got, []string{runtime.Version()}) {
		t.Errorf("Versions() = %v, want the Go versions only", got)
	}
}

func TestDecodeTableModuleEntries(t *testing.T) {
	good := `{"go1.26.8": {"a.T.X": 0}, "example.com/m@v1.2.3": {"example.com/m.T.X": 8}, "example.com/m/v2@v2.0.0-20240101000000-abcdef123456": {"example.com/m/v2.T.X": 8}}`
	if _, err := DecodeTable([]byte(good)); err != nil {
		t.Errorf("valid table: %v", err)
	}
	for _, bad := range []string{
		`{"example.com/m@1.2.3": {"example.com/m.T.X": 8}}`,
		`{"@v1.2.3": {"x.T.X": 8}}`,
		`{"example.com/m@v1.2.3": {}}`,
	} {
		if _, err := DecodeTable([]byte(bad)); err == nil {
			t.Errorf("DecodeTable(%s) accepted it", bad)
		}
	}
}
