// Package verifier loads every BPF program of zerotrace through the kernel's
// verifier, one program at a time, for real target binaries, and prints a
// table of the results. Set ZEROTRACE_VERIFIER_REPORT to a path to also get
// the table as JSON (the kernel matrix collects it from each guest).
package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/inject"
	"github.com/zerotrace/zerotrace/probes/openssl"
	"github.com/zerotrace/zerotrace/probes/phases"
	"github.com/zerotrace/zerotrace/probes/session"
	"github.com/zerotrace/zerotrace/probes/syscalls"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// Result is one program's verdict.
type Result struct {
	Instrumentation string `json:"instrumentation"`
	Program         string `json:"program"`
	Target          string `json:"target"`
	Status          string `json:"status"` // "loaded", "rejected" or "not applicable"
	Instructions    int    `json:"instructions,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

var processed = regexp.MustCompile(`processed (\d+) insns`)

func TestVerifierAcceptsEveryProgram(t *testing.T) {
	testenv.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Logf("RLIMIT_MEMLOCK: %v", err)
	}
	shared, err := events.LoadShared(events.DefaultRingSize)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()

	// A normal build exercises every branch; a stripped one loads with the
	// type-check constants at zero, which prunes code differently. The
	// database sample app is the target that links database/sql.
	builds := map[string]string{
		"sampleapp":          testenv.BuildSampleApp(t),
		"sampleapp-stripped": testenv.BuildSampleAppWith(t, "", "-s -w"),
		"dbapp":              testenv.BuildDBApp(t),
	}
	var results []Result
	names := make([]string, 0, len(builds))
	for name := range builds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cmd, _ := testenv.StartSampleApp(t, builds[name])
		// With every option on, so that every program is in the specs.
		opts := session.Options{InjectWriteUser: true}
		plan, err := session.Prepare(cmd.Process.Pid, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, in := range plan.Instrumentations {
			spec, err := in.Spec(shared)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, in.Name(), err)
			}
			for _, prog := range sortedPrograms(spec) {
				results = append(results, loadOne(t, in.Name(), prog, name, spec, shared))
			}
		}
		plan.Target.Close()
	}
	spec, err := inject.Spec(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range sortedPrograms(spec) {
		results = append(results, loadOne(t, "context injection", prog, "any", spec, shared))
	}
	// Phases are attached from the configuration, for any Go binary; the
	// goid offsets of go1.26 (the verifier sees them as constants).
	if spec, err = phases.Spec(shared, 152, 280); err != nil {
		t.Fatal(err)
	}
	for _, prog := range sortedPrograms(spec) {
		results = append(results, loadOne(t, "phases", prog, "any", spec, shared))
	}
	if spec, err = syscalls.Spec(shared); err != nil {
		t.Fatal(err)
	}
	for _, prog := range sortedPrograms(spec) {
		results = append(results, loadOne(t, "kernel HTTP", prog, "any", spec, shared))
	}
	if spec, err = openssl.Spec(shared); err != nil {
		t.Fatal(err)
	}
	for _, prog := range sortedPrograms(spec) {
		results = append(results, loadOne(t, "TLS plaintext (OpenSSL)", prog, "any", spec, shared))
	}
	report(t, results)
}

// needs says what a program needs beyond its program type, by the kernel
// feature check the agent itself makes before choosing an injection
// mechanism, and whether this kernel must have it: the mechanism named by
// ZEROTRACE_TEST_INJECT (sk-msg by default) must load here.
func needs(prog string) (check func() error, mode string) {
	switch prog {
	case "write_subset_enter":
		return inject.ProbeWriteUser, "write-user"
	case "inject_sockops", "inject_traceparent":
		return inject.CheckSockMsg, "sk-msg"
	}
	return nil, ""
}

// required tells whether this kernel must allow the injection mechanism
// mode (ZEROTRACE_TEST_INJECT: a comma-separated list, sk-msg by default).
func required(mode string) bool {
	list := os.Getenv("ZEROTRACE_TEST_INJECT")
	if list == "" {
		list = "sk-msg"
	}
	return slices.Contains(strings.Split(list, ","), mode)
}

func sortedPrograms(spec *ebpf.CollectionSpec) []string {
	var names []string
	for n := range spec.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// loadOne loads a single program (and the maps it uses) from spec.
func loadOne(t *testing.T, inst, prog, target string, spec *ebpf.CollectionSpec, shared *events.Shared) Result {
	one := spec.Copy()
	for n := range one.Programs {
		if n != prog {
			delete(one.Programs, n)
		}
	}
	r := Result{Instrumentation: inst, Program: prog, Target: target}
	// A kernel that lacks the program's type altogether cannot run it by
	// design (the agent has to do without it there): that is reported, not
	// a verifier failure. Only ErrNotSupported means absent; other errors
	// fall through to the load, which then explains itself.
	if typ := one.Programs[prog].Type; errors.Is(features.HaveProgramType(typ), ebpf.ErrNotSupported) {
		r.Status = "not applicable"
		r.Reason = fmt.Sprintf("this kernel has no %s programs", typ)
		t.Logf("%s: %s for %s: %s", inst, prog, target, r.Reason)
		return r
	}
	if check, mode := needs(prog); check != nil {
		if err := check(); err != nil {
			if required(mode) {
				t.Errorf("%s: %s for %s: this kernel must allow --inject %s: %v", inst, prog, target, mode, err)
			}
			r.Status = "not applicable"
			r.Reason = err.Error()
			t.Logf("%s: %s for %s: %s", inst, prog, target, r.Reason)
			return r
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{
		MapReplacements: shared.Replacements(),
		Programs:        ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		r.Status = "rejected"
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			r.Reason = strings.Join(ve.Log[max(0, len(ve.Log)-5):], " | ")
		} else {
			r.Reason = err.Error()
		}
		t.Errorf("%s: %s for %s rejected: %v", inst, prog, target, err)
		// The statistics say why, not where: load it again with the
		// instruction log, whose end shows the instructions that led
		// to the rejection.
		if _, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{
			MapReplacements: shared.Replacements(),
			Programs:        ebpf.ProgramOptions{LogLevel: ebpf.LogLevelBranch | ebpf.LogLevelInstruction},
		}); errors.As(err, &ve) {
			t.Logf("%s for %s: the verifier's last instructions:\n%s", prog, target, strings.Join(ve.Log[max(0, len(ve.Log)-60):], "\n"))
		}
		return r
	}
	defer coll.Close()
	r.Status = "loaded"
	if m := processed.FindStringSubmatch(coll.Programs[prog].VerifierLog); m != nil {
		fmt.Sscan(m[1], &r.Instructions)
	}
	return r
}

func report(t *testing.T, results []Result) {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %-22s %-20s %-14s %s\n", "instrumentation", "program", "target", "status", "insns processed / reason")
	for _, r := range results {
		detail := fmt.Sprint(r.Instructions)
		if r.Status != "loaded" {
			detail = r.Reason
		}
		fmt.Fprintf(&b, "%-18s %-22s %-20s %-14s %s\n", r.Instrumentation, r.Program, r.Target, r.Status, detail)
	}
	t.Log("verifier results:\n" + b.String())
	if path := os.Getenv("ZEROTRACE_VERIFIER_REPORT"); path != "" {
		data, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Errorf("writing %s: %v", path, err)
		}
	}
	if len(results) == 0 {
		t.Fatal("no program was loaded")
	}
	loaded := 0
	for _, r := range results {
		if r.Status == "loaded" {
			loaded++
		}
	}
	if loaded == 0 {
		t.Fatalf("none of the %d programs was loaded on this kernel", len(results))
	}
}
