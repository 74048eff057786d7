package probes

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/gobin/gobintest"
	"github.com/zerotrace/zerotrace/probes/offsets"
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

// testSpecs is what bpf2go would generate for a small object.
type testSpecs struct {
	Start    *ebpf.ProgramSpec  `ebpf:"start"`
	End      *ebpf.ProgramSpec  `ebpf:"end"`
	Ret      *ebpf.ProgramSpec  `ebpf:"ret"`
	Resp     *ebpf.VariableSpec `ebpf:"off_resp"`
	Err      *ebpf.VariableSpec `ebpf:"off_err"`
	Captured *ebpf.VariableSpec `ebpf:"closure_err"`
	Field    *ebpf.VariableSpec `ebpf:"off_field"`
	Fn       *ebpf.VariableSpec `ebpf:"fn"`
}

func testSpec() (*ebpf.CollectionSpec, error) {
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{}, Variables: map[string]*ebpf.VariableSpec{}}
	for _, p := range []string{"start", "end", "ret"} {
		spec.Programs[p] = &ebpf.ProgramSpec{Name: p, Type: ebpf.Kprobe}
	}
	for _, v := range []string{"off_resp", "off_err", "closure_err", "off_field", "fn"} {
		spec.Variables[v] = &ebpf.VariableSpec{Name: v, SectionName: ".rodata", Value: make([]byte, 8)}
	}
	return spec, nil
}

// testProbe starts at frameOf's entry and ends at the entry of deferred,
// reading frameOf's frame, or on frameOf's RETs when the frame is not
// recognised; it reads a field under two names and recognises a type by an
// optional function.
func testProbe(frameOf, deferred string, field offsets.Field, alt offsets.Field, fn string) *Probe {
	return Declare("test", testSpec, func(s *testSpecs) Declaration {
		end := &Part{Gives: "at the entry of the deferred closure"}
		rets := &Part{Gives: "ends on the RETs", Instead: end}
		typ := &Part{Gives: "a type's attribute"}
		return Declaration{
			Uprobes: []Uprobe{
				{Symbol: deferred, Entry: s.End, Part: end},
				{Symbol: frameOf, Return: s.Ret, Part: rets},
				{Symbol: frameOf, Entry: s.Start},
			},
			Frames: []Frame{{Symbol: frameOf, Results: []*ebpf.VariableSpec{s.Resp, s.Err}, Deferred: deferred, Captured: s.Captured, CapturedWord: 1, Part: end}},
			Reads:  []Read{{Field: field, Alt: []offsets.Field{alt}, Offset: s.Field, Size: Word}},
			Funcs:  []Func{{Symbol: fn, Addr: s.Fn, Part: typ, Optional: true}},
		}
	})
}

func TestPlanFramesAndFallbacks(t *testing.T) {
	path := fixtures.Build(t, "retfinder", gobintest.RetFinder, []string{"CGO_ENABLED=0"})
	b, err := gobin.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tg := &Target{Exe: path, ProbePath: path, Bin: b}
	renamed := offsets.Field{Struct: "net/http.noSuchType", Name: "URL"}
	method := offsets.Field{Struct: "net/http.Request", Name: "Method"}
	fn, err := b.Func("net/http.(*Transport).roundTrip")
	if err != nil {
		t.Fatal(err)
	}
	slots, err := b.ResultSlots(fn, 2)
	if err != nil {
		t.Fatal(err)
	}

	// The frame is found: the deferred closure ends the span, no RET probe.
	p := testProbe("net/http.(*Transport).roundTrip", "net/http.(*Transport).roundTrip.func1", renamed, method, "main.noSuchFunc")
	planned, err := PlanTarget(tg, []*Probe{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := planned[0]
	if in.State != Active || len(in.Fallbacks) != 0 || len(in.Missing) != 0 {
		t.Fatalf("%s %+v %+v %s, want active", in.State, in.Missing, in.Fallbacks, in.Why)
	}
	if !in.keep["end"] || in.keep["ret"] || !in.keep["start"] {
		t.Errorf("programs kept %v, want start and end", in.keep)
	}
	if in.consts["off_resp"] != uint64(slots[0]) || in.consts["off_err"] != uint64(slots[1]) || in.consts["closure_err"] == 0 {
		t.Errorf("frame constants %v, want the slots %#x and the closure's offset", in.consts, slots)
	}
	// The field is read under its other name; the optional function the
	// binary lacks is no loss.
	if off, _ := tg.Offsets.Get(method); in.consts["off_field"] != off || in.consts["fn"] != 0 {
		t.Errorf("off_field %d fn %#x, want %d and 0", in.consts["off_field"], in.consts["fn"], off)
	}

	// A function whose frame is not recognised: its RETs, said as such.
	p = testProbe("main.classify", "net/http.(*Transport).roundTrip.func1", renamed, method, "main.noSuchFunc")
	if planned, err = PlanTarget(tg, []*Probe{p}, Options{}); err != nil {
		t.Fatal(err)
	}
	in = planned[0]
	if in.State != Active || len(in.Missing) != 0 || len(in.Fallbacks) != 1 {
		t.Fatalf("%s missing %+v fallbacks %+v, want active with one fallback", in.State, in.Missing, in.Fallbacks)
	}
	if fb := in.Fallbacks[0]; fb.Gives != "ends on the RETs" || fb.Instead != "at the entry of the deferred closure" || fb.Why == "" {
		t.Errorf("fallback %+v", fb)
	}
	if in.keep["end"] || !in.keep["ret"] || in.consts["off_resp"] != 0 {
		t.Errorf("programs kept %v, constants %v: want the RETs, no frame", in.keep, in.consts)
	}
}
