package registry

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/nethttp/server"
	"github.com/zerotrace/zerotrace/probes/offsets"
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
// probe reads, for the newest Go version it records: otherwise a probe
// gained a field and the table was not regenerated (scripts/gen-offsets).
func TestTableHasEveryField(t *testing.T) {
	vs := offsets.Versions()
	newest := vs[len(vs)-1]
	fields, err := Fields()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if f.Module != offsets.Std {
			continue
		}
		if _, err := offsets.Lookup(newest, f); err != nil {
			t.Errorf("%v; regenerate the table with: go run ./scripts/gen-offsets", err)
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
