package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/probes/calibrate"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestPhaseShapes traces the phase fixture (tests/testdata/phaseapp) with
// phases in the shapes an entry and RET probe get wrong without care: every
// instantiation of a generic function, recursion (one span per level, each
// the child of the one that called it), a phase a panic unwound and the
// handler recovered from (ended when the goroutine went on, marked), a
// phase a panic took through net/http's recovery and one whose goroutine
// called runtime.Goexit (ended with the request or the goroutine, marked),
// a phase whose prologue grew the stack (its entry runs twice: one
// span), and recursion deeper than the 16 phases kept open per goroutine
// (the deeper calls counted as lost, the innermost traced one marked), and
// a phase that hijacks its connection (net/http calls a request end then,
// which must not end the phase). Once built as usual and once as a
// position-independent executable (probed addresses move with its load
// address).
func TestPhaseShapes(t *testing.T) {
	testenv.RequireRoot(t)
	for _, mode := range []string{"", "pie"} {
		t.Run("buildmode="+mode, func(t *testing.T) { phaseShapes(t, mode) })
	}
}

func phaseShapes(t *testing.T, buildMode string) {
	zt := testenv.BuildZerotrace(t)
	app, addr := testenv.StartSampleApp(t, testenv.BuildPhaseApp(t, buildMode))
	config := writeConfig(t, `
phases: ["main.Map[...]", main.fact, main.risky, main.after, main.quit, main.bigFrame, main.upgrade]
`)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "json", "--config", config)
	if !strings.Contains(a.Stderr(), "main.Map[go.shape.int], main.Map[go.shape.string]") {
		t.Errorf("both instantiations of main.Map are not attached:\n%s", a.Stderr())
	}
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	paths := []string{"/generic", "/recurse?n=3", "/deep", "/unwind", "/abort", "/goexit", "/grow", "/hijack"}
	for _, p := range paths {
		resp, err := c.Get("http://" + addr + p)
		if p == "/abort" {
			// The handler panicked: net/http closed the connection.
			if err == nil {
				resp.Body.Close()
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", p, resp.StatusCode)
		}
	}
	if !alive(app.Process.Pid) {
		t.Fatal("the traced program died")
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	children := map[string][]observed{}
	server := map[string]observed{}
	for _, s := range spans {
		children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
		if s.Kind == "server" {
			server[s.Attrs["url.path"]] = s
		}
	}
	under := func(path string) []observed {
		s, ok := server[path]
		if !ok {
			t.Fatalf("no server span for %s:\n%s", path, a.Stdout())
		}
		return children[s.SpanID]
	}
	describe := func(ss []observed) string {
		var out []string
		for _, s := range ss {
			out = append(out, fmt.Sprintf("%s %s %s(%s) %v", s.Kind, s.Name, s.Attrs["code.function.name"], s.Attrs["zerotrace.phase.ended"], s.End.Sub(s.Start)))
		}
		return strings.Join(out, "; ")
	}

	// Generic: one span per instantiation called, named as configured.
	gen := under("/generic")
	var fns []string
	for _, s := range gen {
		if s.Name == "main.Map[...]" && s.Kind == "internal" {
			fns = append(fns, s.Attrs["code.function.name"])
		}
	}
	slices.Sort(fns)
	if !slices.Equal(fns, []string{"main.Map[go.shape.int]", "main.Map[go.shape.string]"}) {
		t.Errorf("/generic: %s", describe(gen))
	}

	// Recursion: fact(3) .. fact(0), each inside the one above.
	level, parent := under("/recurse"), "server"
	for depth := range 4 {
		if len(level) != 1 || level[0].Name != "main.fact" || level[0].Status == "error" {
			t.Fatalf("/recurse: under %s at depth %d: %s", parent, depth, describe(level))
		}
		parent = level[0].Name
		if depth == 3 && len(children[level[0].SpanID]) != 0 {
			t.Errorf("/recurse: fact(0) has children: %s", describe(children[level[0].SpanID]))
		}
		next := children[level[0].SpanID]
		if depth < 3 {
			if len(next) == 1 && (next[0].Start.Before(level[0].Start) || next[0].End.After(level[0].End)) {
				t.Errorf("/recurse: depth %d is not inside its caller", depth+1)
			}
		}
		level = next
	}

	// fact(20): 21 nested calls, of which the 16 outermost are traced,
	// the innermost of them marked, and the 5 others counted as lost.
	level, traced := under("/deep"), 0
	for len(level) == 1 && level[0].Name == "main.fact" {
		traced++
		if overflow := level[0].Attrs["zerotrace.phase.overflow"] == "true"; overflow != (traced == 16) {
			t.Errorf("/deep: level %d: zerotrace.phase.overflow %v", traced, overflow)
		}
		level = children[level[0].SpanID]
	}
	if traced != 16 || len(level) != 0 {
		t.Errorf("/deep: %d nested main.fact spans, want 16; then %s", traced, describe(level))
	}
	if !strings.Contains(a.Stderr(), "phase_nesting_overflow=5") {
		t.Errorf("the 5 calls too deep to trace are not reported lost:\n%s", a.Stderr())
	}

	check := func(path, name, ended string) {
		t.Helper()
		for _, s := range under(path) {
			if s.Name != name {
				continue
			}
			if s.Attrs["zerotrace.phase.ended"] != ended || (ended != "") != (s.Status == "error") {
				t.Errorf("%s: %s ended %q with status %s, want %q", path, name, s.Attrs["zerotrace.phase.ended"], s.Status, ended)
			}
			return
		}
		t.Errorf("%s: no %s under the server span: %s", path, name, describe(under(path)))
	}
	check("/unwind", "main.risky", "unwound")
	check("/unwind", "main.after", "")
	check("/abort", "main.risky", "request_ended")
	check("/goexit", "main.quit", "request_ended")
	check("/grow", "main.bigFrame", "")
	// Hijacking ends nothing: the phase that hijacked returns.
	check("/hijack", "main.upgrade", "")
	var grown int
	for _, s := range spans {
		if s.Name == "main.bigFrame" {
			grown++
		}
	}
	if grown != 1 {
		t.Errorf("%d main.bigFrame spans for one call whose prologue grew the stack", grown)
	}
	// Every phase span ends no later than its request.
	for path, srv := range server {
		for _, s := range children[srv.SpanID] {
			if s.End.After(srv.End.Add(clockSlack)) {
				t.Errorf("%s: %s ends after its request", path, s.Name)
			}
		}
	}
}

// TestPhaseCost prices one traced call of a phase: a loop of a trivial
// function (main.tick of tests/testdata/phaseapp) timed by the program
// itself, untraced and then with the function a phase: its entry probe
// (the emulated stack-check jump), its RET probe (single-stepped), the two
// programs and one ring-buffer record per call.
func TestPhaseCost(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app, addr := testenv.StartSampleApp(t, testenv.BuildPhaseApp(t, ""))
	c := &http.Client{Timeout: testenv.Timeout(t, 60*time.Second)}
	const n, rounds = 50000, 5
	perCall := func() time.Duration {
		var got []float64
		for range rounds {
			resp, err := c.Get(fmt.Sprintf("http://%s/bench?n=%d", addr, n))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
			if err != nil {
				t.Fatalf("/bench: %q", b)
			}
			got = append(got, f)
		}
		slices.Sort(got)
		return time.Duration(got[len(got)/2] * float64(time.Nanosecond))
	}
	untraced := perCall()
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "none",
		"--config", writeConfig(t, "phases: [main.tick]\n"))
	traced := perCall()
	a.stop()
	hit, err := calibrate.UprobeHit(200_000)
	if err != nil {
		t.Fatal(err)
	}
	extra := traced - untraced
	t.Logf("one call of a trivial function: %v untraced, %v as a phase: +%v per call (%.0f×); "+
		"bare uprobe hits on this machine now: emulated %v, single-stepped %v, RET %v; "+
		"the phase costs %.1f× a bare emulated entry",
		untraced, traced, extra, float64(traced)/float64(max(untraced, 1)),
		hit.Emulated, hit.SingleStep, hit.Return, float64(extra)/float64(max(hit.Emulated, 1)))
	// The probes ran: a call costs at least a bare emulated hit more.
	if extra < hit.Emulated {
		t.Errorf("a traced call costs only %v more: the phase probes did not run", extra)
	}
}
