package phases

import (
	"os"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/events/eventstest"
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

func TestMatchGeneric(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"main.Map[...]", "main.Map[go.shape.int]", true},
		{"main.Map[...]", "main.Map[go.shape.[]int]", true},
		{"main.Map[...]", "main.Map[go.shape.struct { A int; B []string }]", true},
		{"main.Map[...]", "main.Map[go.shape.int].func1", false}, // a closure inside it
		{"main.Map[...]", "main.MapAll[go.shape.int]", false},
		{"main.Map[...]", "main.Map", false},
		{"main.(*List[...]).Push", "main.(*List[go.shape.string]).Push", true},
		{"main.(*List[...]).Push", "main.(*List[go.shape.string]).Pop", false},
		{"main.Pair[...].Swap", "main.Pair[go.shape.int,go.shape.string].Swap", true},
		{"main.buildPrompt", "main.buildPrompt", true},
	} {
		if got := MatchGeneric(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchGeneric(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestShortName(t *testing.T) {
	for in, want := range map[string]string{
		"main.buildPrompt":                           "main.buildPrompt",
		"github.com/acme/rag.(*Store).Search":        "rag.(*Store).Search",
		"github.com/acme/rag.Map[...]":               "rag.Map[...]",
		"example.com/x.Map[...]":                     "x.Map[...]",
		"example.com/x.F[go.shape.*example.com/y.T]": "x.F[go.shape.*example.com/y.T]",
	} {
		if got := ShortName(in); got != want {
			t.Errorf("ShortName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResolve finds the fixture's phases, in a normal and a stripped
// build: every instantiation of a generic function, once however often
// named, and a refusal with its reason for a function inlined everywhere,
// one inlined at some calls (where DWARF tells), an absent one and a
// generic one named without its type arguments.
func TestResolve(t *testing.T) {
	for _, flags := range [][]string{nil, {"-ldflags=-s -w"}} {
		name := "phaseapp"
		if flags != nil {
			name += "-stripped"
		}
		path := fixtures.Build(t, name, "./tests/testdata/phaseapp", []string{"CGO_ENABLED=0"}, flags...)
		bin, err := gobin.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		found, refused := Resolve(bin, []string{"main.Map[...]", "main.fact", "main.twice", "main.nothing", "main.Map", "main.half", "main.fact"})
		bin.Close()
		var syms []string
		for _, f := range found {
			syms = append(syms, f.Pattern+"="+f.Symbol)
			if len(f.ret) == 0 || f.at == 0 {
				t.Errorf("%s: %s: no RET or entry: %+v", name, f.Symbol, f)
			}
		}
		want := "main.Map[...]=main.Map[go.shape.int] main.Map[...]=main.Map[go.shape.string] main.fact=main.fact"
		if flags != nil {
			// Without DWARF, a function inlined at some calls only cannot
			// be told.
			want += " main.half=main.half"
		}
		if got := strings.Join(syms, " "); got != want {
			t.Errorf("%s: found %s, want %s", name, got, want)
		}
		why := map[string]string{}
		for _, r := range refused {
			why[r.Pattern] = r.Why
		}
		refusals := map[string]string{
			"main.twice":   "inlined every call",
			"main.nothing": "no such function",
			"main.Map":     "name its instantiations as main.Map[...]",
		}
		if flags == nil {
			refusals["main.half"] = "main.half: the compiler inlined 1 of its calls"
		}
		for pattern, want := range refusals {
			if !strings.Contains(why[pattern], want) {
				t.Errorf("%s: %s refused with %q, want %q", name, pattern, why[pattern], want)
			}
		}
		if len(refused) != len(refusals) {
			t.Errorf("%s: refused %v", name, refused)
		}
	}
}

// TestRecord decodes a phase record into an INTERNAL span named as
// configured, with its function and goroutine, and an unfinished one with
// error status and how it ended.
func TestRecord(t *testing.T) {
	id := ids.of("github.com/acme/rag.(*Store).Search", "github.com/acme/rag.(*Store).Search")
	e := phasesPhaseEvent{StartNs: 1_000, Goid: 42, Func: id, End: uint8(phasesPhaseEndPHASE_END_REQUEST)}
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = uint8(phasesPhaseRecordEVENT_PHASE), 7, 5_000
	e.Ids.TraceId[0], e.Ids.SpanId[0], e.Ids.ParentId[0] = 1, 2, 3
	ev, err := Record.Decode(eventstest.Raw(&e), &events.Decoder{Clock: events.FixedClock(0)})
	if err != nil {
		t.Fatal(err)
	}
	s := ev.(*model.Span)
	semconv.Apply(s, nil)
	a := eventstest.Attrs(s)
	if s.Name != "rag.(*Store).Search" || s.Kind.String() != "internal" || s.End.Sub(s.Start) != 4000 ||
		a["code.function.name"] != "github.com/acme/rag.(*Store).Search" || a["zerotrace.goroutine.id"] != int64(42) ||
		a["zerotrace.phase.ended"] != "request_ended" || s.Status.String() != "Error" || !s.ParentSpanID.IsValid() {
		t.Errorf("span %q %v %v status %v: %v", s.Name, s.Kind, s.End.Sub(s.Start), s.Status, a)
	}
}
