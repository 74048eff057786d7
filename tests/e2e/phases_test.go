package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// phaseTimes is one phase as tests/genaiapp's /gateway measured it.
type phaseTimes struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// gatewayAnswer is what tests/genaiapp's /gateway says it did: each phase's
// start and end as the service measured them.
type gatewayAnswer struct {
	Start  time.Time    `json:"start"`
	Phases []phaseTimes `json:"phases"`
	End    time.Time    `json:"end"`
}

// TestPhaseSpans traces the GenAI gateway (tests/genaiapp /gateway), whose
// handler runs three named phases (main.parseInput, main.retrieve,
// main.buildPrompt) and then an openai-go chat call through
// main.(*clients).run, with a configuration naming those four functions, a
// function the compiler inlined everywhere (main.openAIUsage) and one the
// binary lacks. In Jaeger, each request is a server span with the three
// phases and the run phase as its INTERNAL children, and the model call's
// CLIENT span a child of the run phase it was made in; every phase lies
// within the times the service measured around its call and lasts at least
// the phase's sleep. The inlined and the missing functions are refused,
// each with its reason, and the others attached.
func TestPhaseSpans(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t)
	app, addr := testenv.StartGenAIApp(t, ms.URL())
	j := jaeger.Start(t)
	service := fmt.Sprintf("e2e-phases-%d", time.Now().UnixNano())
	config := writeConfig(t, `
phases:
  - main.parseInput
  - main.retrieve
  - main.buildPrompt
  - main.(*clients).run
  - main.openAIUsage
  - main.noSuchPhase
`)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "json",
		"--service-name", service, "--otlp-endpoint", j.OTLPEndpoint(), "--config", config)
	stderr := a.Stderr()
	for _, want := range []string{
		"phase main.openAIUsage refused: the compiler inlined every call to it",
		"phase main.noSuchPhase refused: the binary has no such function",
		"phases (4 entry + ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	const phaseMS, requests = 15, 3
	answers := gatewayRequests(t, addr, requests, phaseMS)
	if !alive(app.Process.Pid) {
		t.Fatal("the traced gateway died")
	}
	a.stop()
	spans := fromJSON(a.jsonSpans())
	checkPhases(t, "json", spans, answers, phaseMS)

	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(t, 60*time.Second))
	defer cancel()
	js, err := j.WaitForSpans(ctx, service, len(spans), testenv.Timeout(t, 30*time.Second))
	if err != nil {
		t.Fatalf("reading the spans back from Jaeger: %v", err)
	}
	checkPhases(t, "jaeger", fromJaeger(js), answers, phaseMS)
}

// gatewayRequests makes n sequential /gateway requests, each phase
// sleeping phaseMS, and returns what the gateway measured.
func gatewayRequests(t *testing.T, addr string, n, phaseMS int) []gatewayAnswer {
	t.Helper()
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	var answers []gatewayAnswer
	for range n {
		resp, err := c.Get(fmt.Sprintf("http://%s/gateway?phase_ms=%d", addr, phaseMS))
		if err != nil {
			t.Fatal(err)
		}
		var g gatewayAnswer
		err = json.NewDecoder(resp.Body).Decode(&g)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(g.Phases) != 3 {
			t.Fatalf("gateway: status %d, %v, %+v", resp.StatusCode, err, g)
		}
		answers = append(answers, g)
	}
	return answers
}

// TestPhaseSpansAsInTheIssue is the issue's own shape: the gateway's three
// phases named, nothing else: four spans under each server span, the three
// phases in order and the model call after them, a child of the server
// span again (each phase gave the context back when it returned), every
// phase within the times the service measured.
func TestPhaseSpansAsInTheIssue(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t)
	app, addr := testenv.StartGenAIApp(t, ms.URL())
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "json",
		"--config", writeConfig(t, "phases: [main.parseInput, main.retrieve, main.buildPrompt]\n"))
	const phaseMS = 5
	answers := gatewayRequests(t, addr, 2, phaseMS)
	a.stop()
	spans := fromJSON(a.jsonSpans())
	children := map[string][]observed{}
	var servers []observed
	for _, s := range spans {
		children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
		if s.Kind == "server" && s.Attrs["url.path"] == "/gateway" {
			servers = append(servers, s)
		}
	}
	slices.SortFunc(servers, func(a, b observed) int { return a.Start.Compare(b.Start) })
	if len(servers) != len(answers) {
		t.Fatalf("%d /gateway server spans for %d requests:\n%s", len(servers), len(answers), a.Stdout())
	}
	for i, srv := range servers {
		kids := slices.Clone(children[srv.SpanID])
		slices.SortFunc(kids, func(a, b observed) int { return a.Start.Compare(b.Start) })
		var got []string
		for _, k := range kids {
			got = append(got, k.Kind+" "+k.Name)
			if len(children[k.SpanID]) != 0 {
				t.Errorf("request %d: %s has children %v", i, k.Name, names(children[k.SpanID]))
			}
		}
		want := []string{"internal main.parseInput", "internal main.retrieve", "internal main.buildPrompt", "client POST"}
		if len(got) != 4 || !slices.Equal(got[:3], want[:3]) || kids[3].Kind != "client" {
			t.Errorf("request %d: under the server span %v, want %v", i, got, want)
			continue
		}
		for j, p := range answers[i].Phases {
			s := kids[j]
			if s.Start.Before(p.Start.Add(-clockSlack)) || s.End.After(p.End.Add(clockSlack)) || s.End.Sub(s.Start) < phaseMS*time.Millisecond {
				t.Errorf("request %d: %s %s..%s, the service measured %s..%s", i, s.Name, s.Start.Format(time.StampMicro),
					s.End.Format(time.StampMicro), p.Start.Format(time.StampMicro), p.End.Format(time.StampMicro))
			}
		}
	}
}

// checkPhases finds, for each gateway answer, its server span and checks
// the tree under it and the phases' times.
func checkPhases(t *testing.T, source string, spans []observed, answers []gatewayAnswer, phaseMS int) {
	t.Helper()
	children := map[string][]observed{}
	var servers []observed
	for _, s := range spans {
		children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
		if s.Kind == "server" && s.Attrs["url.path"] == "/gateway" {
			servers = append(servers, s)
		}
	}
	slices.SortFunc(servers, func(a, b observed) int { return a.Start.Compare(b.Start) })
	if len(servers) != len(answers) {
		t.Fatalf("%s: %d /gateway server spans for %d requests", source, len(servers), len(answers))
	}
	for i, srv := range servers {
		// The requests were sequential: the i-th server span by start
		// is the i-th answer.
		g := answers[i]
		byName := map[string]observed{}
		for _, c := range children[srv.SpanID] {
			if c.Kind != "internal" {
				t.Errorf("%s: request %d: a %s child %q of the server span, want only phases", source, i, c.Kind, c.Name)
				continue
			}
			if _, dup := byName[c.Name]; dup {
				t.Errorf("%s: request %d: two phases %q", source, i, c.Name)
			}
			byName[c.Name] = c
			if c.TraceID != srv.TraceID {
				t.Errorf("%s: phase %q in another trace", source, c.Name)
			}
		}
		for _, p := range g.Phases {
			s, ok := byName[p.Name]
			if !ok {
				t.Errorf("%s: request %d: no span for phase %s under the server span (children %v)", source, i, p.Name, names(children[srv.SpanID]))
				continue
			}
			if s.Attrs["code.function.name"] != p.Name || s.Attrs["zerotrace.goroutine.id"] == "" || s.Status == "error" {
				t.Errorf("%s: phase %s: attributes %v, status %s", source, p.Name, s.Attrs, s.Status)
			}
			// Inside what the service measured around the call, and at
			// least its sleep.
			if s.Start.Before(p.Start.Add(-clockSlack)) || s.End.After(p.End.Add(clockSlack)) {
				t.Errorf("%s: phase %s: span %s..%s outside the service's %s..%s", source, p.Name,
					s.Start.Format(time.StampMicro), s.End.Format(time.StampMicro), p.Start.Format(time.StampMicro), p.End.Format(time.StampMicro))
			}
			if d := s.End.Sub(s.Start); d < time.Duration(phaseMS)*time.Millisecond {
				t.Errorf("%s: phase %s lasted %v, less than its %d ms sleep", source, p.Name, d, phaseMS)
			}
		}
		run, ok := byName["main.(*clients).run"]
		if !ok {
			t.Errorf("%s: request %d: no main.(*clients).run phase (children %v)", source, i, names(children[srv.SpanID]))
			continue
		}
		if run.Start.Before(g.Phases[2].End) || run.End.After(g.End.Add(clockSlack)) {
			t.Errorf("%s: request %d: the run phase %s..%s is not between the last phase and the answer", source, i,
				run.Start.Format(time.StampMicro), run.End.Format(time.StampMicro))
		}
		calls := children[run.SpanID]
		if len(calls) != 1 || calls[0].Kind != "client" || !strings.Contains(calls[0].Attrs["url.full"], "/chat/completions") {
			t.Errorf("%s: request %d: under the run phase %v, want the one model call", source, i, names(calls))
			continue
		}
		if call := calls[0]; call.Start.Before(run.Start) || call.End.After(run.End) {
			t.Errorf("%s: request %d: the model call is not inside its phase", source, i)
		}
		if i == 0 {
			t.Logf("%s: %s %s %v", source, srv.Kind, srv.Name, srv.End.Sub(srv.Start))
			for _, c := range children[srv.SpanID] {
				t.Logf("%s:   %s %s %v (service measured %v)", source, c.Kind, c.Name, c.End.Sub(c.Start), measured(g, c.Name))
				for _, cc := range children[c.SpanID] {
					t.Logf("%s:     %s %s %v", source, cc.Kind, cc.Name, cc.End.Sub(cc.Start))
				}
			}
		}
	}
}

// measured is how long the service measured the named phase.
func measured(g gatewayAnswer, name string) time.Duration {
	for _, p := range g.Phases {
		if p.Name == name {
			return p.End.Sub(p.Start)
		}
	}
	return 0
}

func names(spans []observed) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Kind+" "+s.Name)
	}
	return out
}
