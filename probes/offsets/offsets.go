// Package offsets tells the probes where struct fields of the Go runtime and
// standard library live in a traced binary. BPF programs read those fields
// through raw pointers, so each offset must match the exact toolchain that
// built the target.
//
// The binary's own DWARF is the authority when present. Stripped binaries
// (-ldflags=-w) fall back to a table generated from every supported Go
// release by scripts/gen-offsets and embedded here (table.json).
package offsets

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"slices"
	"strings"
	"sync"

	"github.com/zerotrace/zerotrace/probes/gobin"
)

// Field names one struct field of the Go runtime or standard library.
type Field struct {
	// Struct is the type's DWARF name: import path, dot, type name, e.g.
	// "net/http.Request" or "internal/poll.FD".
	Struct string
	// Name is the field name as declared, exported or not.
	Name string
}

// String returns the fully qualified field name, e.g.
// "net/http.Request.Method", which is also its key in table.json.
func (f Field) String() string {
	return f.Struct + "." + f.Name
}

// Set holds resolved offsets.
type Set struct {
	offsets map[Field]uint64
	// Source says where the offsets came from: "dwarf", "table go1.26.8",
	// or "table go1.26.8 (nearest patch for go1.26.3)".
	Source string
}

// Get returns the offset of f and whether it was resolved. An optional field
// that the binary's Go version does not have is reported as absent.
func (s Set) Get(f Field) (uint64, bool) {
	off, ok := s.offsets[f]
	return off, ok
}

// ErrUnknownVersion is wrapped by Resolve when the binary has no DWARF and
// the bundled table has no usable entry for its Go version.
var ErrUnknownVersion = errors.New("no struct offsets known for this Go version")

// unknownVersionError carries the full explanation (which version, which
// versions are known, what to do) while still matching ErrUnknownVersion.
type unknownVersionError struct{ msg string }

func (e *unknownVersionError) Error() string { return e.msg }
func (e *unknownVersionError) Unwrap() error { return ErrUnknownVersion }

// Resolve returns the offsets of fields, from the binary's DWARF when
// present, otherwise from the bundled table keyed by b.GoVersion.
//
// Optional fields may be absent (e.g. a field that only exists in newer Go
// versions); a missing required field is an error naming it, wrapping
// gobin.ErrNoField or gobin.ErrNoType. Without DWARF, a Go version the table
// cannot answer for is an error wrapping ErrUnknownVersion.
func Resolve(b *gobin.Binary, required, optional []Field) (Set, error) {
	if b.HasDWARF {
		return fromDWARF(b, required, optional)
	}
	t, err := bundled()
	if err != nil {
		return Set{}, err
	}
	s, err := t.lookup(b.GoVersion, required, optional)
	if err != nil {
		return Set{}, fmt.Errorf("resolving struct offsets for %s: %w", b.Path, err)
	}
	return s, nil
}

// fromDWARF trusts nothing but the binary itself: DWARF describes exactly
// the layout it was compiled with, whatever the toolchain or GOEXPERIMENT.
func fromDWARF(b *gobin.Binary, required, optional []Field) (Set, error) {
	s := Set{offsets: make(map[Field]uint64, len(required)+len(optional)), Source: "dwarf"}
	for _, f := range required {
		off, err := b.FieldOffset(f.Struct, f.Name)
		if err != nil {
			return Set{}, fmt.Errorf("resolving required field %s: %w", f, err)
		}
		s.offsets[f] = off
	}
	for _, f := range optional {
		if _, done := s.offsets[f]; done {
			continue
		}
		off, err := b.FieldOffset(f.Struct, f.Name)
		if errors.Is(err, gobin.ErrNoField) || errors.Is(err, gobin.ErrNoType) {
			continue
		}
		if err != nil {
			return Set{}, fmt.Errorf("resolving optional field %s: %w", f, err)
		}
		s.offsets[f] = off
	}
	return s, nil
}

// Versions lists the Go versions in the bundled table, oldest first.
func Versions() []string {
	t, err := bundled()
	if err != nil {
		return nil
	}
	return t.Versions()
}

//go:embed table.json
var tableJSON []byte

var bundled = sync.OnceValues(func() (Table, error) {
	t, err := DecodeTable(tableJSON)
	if err != nil {
		return nil, fmt.Errorf("bundled offsets table: %w", err)
	}
	return t, nil
})

// Table is the form of table.json: Go version ("go1.26.8") to field
// (Field.String()) to byte offset. A field absent from a version's entry does
// not exist in that version.
type Table map[string]map[string]uint64

// DecodeTable parses and checks a table in the table.json format.
func DecodeTable(data []byte) (Table, error) {
	var t Table
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decoding offsets table: %w", err)
	}
	for v, fields := range t {
		if !isRelease(v) {
			return nil, fmt.Errorf("decoding offsets table: %q is not a released Go version", v)
		}
		if len(fields) == 0 {
			return nil, fmt.Errorf("decoding offsets table: %s has no fields", v)
		}
	}
	return t, nil
}

// Encode returns the table as indented JSON with sorted keys and a final
// newline, so regenerating an unchanged table leaves the file byte for byte
// the same.
func (t Table) Encode() ([]byte, error) {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Versions lists the table's Go versions, oldest first.
func (t Table) Versions() []string {
	vs := make([]string, 0, len(t))
	for v := range t {
		vs = append(vs, v)
	}
	slices.SortFunc(vs, version.Compare)
	return vs
}

// isRelease reports whether v names a released toolchain such as "go1.26.8"
// or "go1.27rc1", as opposed to a devel build or garbage.
func isRelease(v string) bool {
	return strings.HasPrefix(v, "go") && version.IsValid(v)
}

// lookup picks the table entry for goVersion (as reported by the binary's
// build info) and extracts the requested fields.
//
// An exact entry wins. Otherwise a release of the same go1.N line is served
// by the newest recorded patch, but only if every recorded patch of that line
// agrees on every requested field: struct layouts rarely change in a patch
// release, and when they did in the recorded ones, guessing would be wrong.
func (t Table) lookup(goVersion string, required, optional []Field) (Set, error) {
	// Build info may append experiments: "go1.26.8 X:nodwarf5".
	base, extra, _ := strings.Cut(goVersion, " ")
	switch {
	case goVersion == "":
		return Set{}, t.unknown("the binary records no Go version and has no DWARF", "")
	case strings.HasPrefix(goVersion, "devel"):
		return Set{}, t.unknown(fmt.Sprintf("no struct offsets known for development toolchain %q and the binary has no DWARF", goVersion),
			"; rebuild it without -w or with a released toolchain")
	case !isRelease(base):
		return Set{}, t.unknown(fmt.Sprintf("no struct offsets known for unrecognised Go version %q and the binary has no DWARF", goVersion), "")
	}

	requested := slices.Concat(required, optional)
	entry, source := base, "table "+base
	if _, ok := t[base]; !ok {
		var patches []string
		for _, v := range t.Versions() {
			if version.Lang(v) == version.Lang(base) {
				patches = append(patches, v)
			}
		}
		if len(patches) == 0 {
			return Set{}, t.unknown(fmt.Sprintf("no struct offsets known for %s and the binary has no DWARF", base), "")
		}
		if f, ok := t.disagree(patches, requested); ok {
			return Set{}, t.unknown(fmt.Sprintf("no struct offsets known for %s and the binary has no DWARF; the recorded %s patches disagree on %s", base, version.Lang(base), f), "")
		}
		entry = patches[len(patches)-1]
		source = fmt.Sprintf("table %s (nearest patch for %s)", entry, base)
	}
	if extra != "" {
		source += fmt.Sprintf(" [binary reports %q]", goVersion)
	}

	fields := t[entry]
	s := Set{offsets: make(map[Field]uint64, len(requested)), Source: source}
	for _, f := range required {
		off, ok := fields[f.String()]
		if !ok {
			return Set{}, fmt.Errorf("resolving required field %s: %w: not in the offsets table for %s (the field may not exist in that Go version, or the table predates the field: regenerate it with scripts/gen-offsets)",
				f, gobin.ErrNoField, entry)
		}
		s.offsets[f] = off
	}
	for _, f := range optional {
		if off, ok := fields[f.String()]; ok {
			s.offsets[f] = off
		}
	}
	return s, nil
}

// disagree returns the first requested field whose presence or offset is not
// the same in every listed version.
func (t Table) disagree(versions []string, requested []Field) (Field, bool) {
	first := t[versions[0]]
	for _, f := range requested {
		want, wantOK := first[f.String()]
		for _, v := range versions[1:] {
			got, ok := t[v][f.String()]
			if ok != wantOK || got != want {
				return f, true
			}
		}
	}
	return Field{}, false
}

// unknown builds the ErrUnknownVersion error, always listing what the table
// does know and how to get past the problem.
func (t Table) unknown(what, hint string) error {
	if hint == "" {
		hint = "; rebuild it without -w or add the version with scripts/gen-offsets"
	}
	known := "the table is empty"
	switch vs := t.Versions(); len(vs) {
	case 0:
	case 1:
		known = "known: " + vs[0]
	default:
		known = "known: " + vs[0] + " … " + vs[len(vs)-1]
	}
	return &unknownVersionError{msg: what + " (" + known + ")" + hint}
}
