// Package session attaches every instrumentation that can run for a set of
// processes, and detaches them again.
package session

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/phases"
	"github.com/zerotrace/zerotrace/probes/registry"
)

// Options are the choices that change what is attached.
type Options = probes.Options

// Plan is what will be attached to one process.
type Plan struct {
	Target *probes.Target
	// Instrumentations are those that will be attached: active or
	// degraded.
	Instrumentations []*probes.Planned
	// Status is every instrumentation, attached or not, with its state.
	Status []*probes.Planned
	// Notes are what the user should know about this process's plan: an
	// instrumentation disabled or degraded and why, a chosen option that
	// is on or cannot be.
	Notes []string
	// Details are what a debug log holds: each attribute lost and why,
	// each instrumentation that does not apply.
	Details []string
}

// Prepare inspects the process pid and decides what to attach, without
// touching the kernel. It fails only when nothing at all can be traced;
// errors are one line and name the process.
func Prepare(pid int, opts Options) (*Plan, error) {
	t, err := probes.OpenTarget(pid)
	if err != nil {
		return nil, err
	}
	p, err := PlanFor(t, registry.Probes(), opts)
	if err != nil {
		t.Close()
		return nil, err
	}
	return p, nil
}

// PlanFor decides what of all to attach to the opened target t.
func PlanFor(t *probes.Target, all []*probes.Probe, opts Options) (*Plan, error) {
	planned, err := probes.PlanTarget(t, all, opts)
	if err != nil {
		return nil, err
	}
	p := &Plan{Target: t, Status: planned}
	for _, in := range planned {
		if in.Runs() {
			p.Instrumentations = append(p.Instrumentations, in)
		}
		switch in.State {
		case probes.Disabled:
			p.Notes = append(p.Notes, fmt.Sprintf("%s disabled: %s", in.Name(), in.Why))
		case probes.NotApplicable:
			p.Details = append(p.Details, fmt.Sprintf("%s not applicable: %s", in.Name(), in.Why))
		}
		var lost []string
		for _, m := range in.Missing {
			if m.Chosen {
				// The user asked for it: say why not, as loudly as the
				// rest of the attach.
				p.Notes = append(p.Notes, fmt.Sprintf("%s: no %s: %s", in.Name(), m.Gives, m.Why))
				continue
			}
			lost = append(lost, m.Gives)
			p.Details = append(p.Details, fmt.Sprintf("%s: no %s: %s", in.Name(), m.Gives, m.Why))
		}
		if len(lost) > 0 {
			p.Notes = append(p.Notes, fmt.Sprintf("%s degraded: without %s", in.Name(), strings.Join(lost, "; ")))
		}
		for _, on := range in.On {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %s", in.Name(), on))
		}
		for _, fb := range in.Fallbacks {
			// Not a loss, a cost: said as loudly as the rest of the attach.
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %s, not %s: %s", in.Name(), fb.Gives, fb.Instead, fb.Why))
		}
	}
	return p, nil
}

// Attached is a process with its programs loaded and attached.
type Attached struct {
	Plan    *Plan
	loaded  []*probes.Loaded
	attachs []*probes.Attachment
	phases  *phases.Attached
	// Summary says what was attached, for the user: each instrumentation
	// with its state.
	Summary string
	// Uprobes are every uprobe attached, with the instruction it is on and
	// whether the kernel emulates it or single-steps it.
	Uprobes []Uprobe
}

// Uprobe is one uprobe attached by an instrumentation.
type Uprobe struct {
	Instrumentation string
	probes.Site
}

// Attach loads and attaches every planned instrumentation. On error nothing
// stays attached or loaded.
func Attach(p *Plan, shared *events.Shared) (*Attached, error) {
	a := &Attached{Plan: p}
	var parts []string
	for _, in := range p.Instrumentations {
		l, err := in.Load(shared)
		if err != nil {
			_ = a.Detach()
			return nil, err
		}
		a.loaded = append(a.loaded, l)
		att, err := probes.AttachUprobes(p.Target, l.Uprobes())
		if err != nil {
			_ = a.Detach()
			return nil, fmt.Errorf("%s: %w", in.Name(), err)
		}
		a.attachs = append(a.attachs, att)
		state := ""
		if in.State == probes.Degraded {
			state = ", degraded"
		}
		stepped := 0
		for _, site := range att.Sites {
			a.Uprobes = append(a.Uprobes, Uprobe{Instrumentation: in.Name(), Site: site})
			if !site.Emulated {
				stepped++
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%d entry + %d return uprobes, %d single-stepped%s)", in.Name(), att.Entries, att.Returns, stepped, state))
	}
	var off []string
	for _, in := range p.Status {
		if !in.Runs() {
			off = append(off, fmt.Sprintf("%s %s", in.Name(), in.State))
		}
	}
	a.Summary = fmt.Sprintf("attached to %s, %s, offsets from %s: %s",
		p.Target, p.Target.Bin.GoVersion, p.Target.Offsets.Source, strings.Join(parts, ", "))
	if len(off) > 0 {
		a.Summary += "; " + strings.Join(off, ", ")
	}
	return a, nil
}

// AttachPhases makes the functions patterns name (the configuration's
// phases) spans of the process (see probes/phases), and says what it did
// in the Summary. A pattern that cannot be traced is refused, with the
// reason, and returned; the error is for what stops all phases, which
// leaves the rest attached.
func (a *Attached) AttachPhases(patterns []string, shared *events.Shared) ([]phases.Refusal, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	ph, err := phases.Attach(a.Plan.Target, shared, patterns, registry.RequestEnds())
	if err != nil {
		return nil, err
	}
	a.phases = ph
	for _, site := range ph.Sites {
		a.Uprobes = append(a.Uprobes, Uprobe{Instrumentation: "phases", Site: site})
	}
	if len(ph.Functions) > 0 {
		a.Summary += "; " + ph.Summary()
	}
	return ph.Refused, nil
}

// Detach removes every link, then unloads the programs.
func (a *Attached) Detach() error {
	var errs []error
	if a.phases != nil {
		errs = append(errs, a.phases.Close())
		a.phases = nil
	}
	for _, att := range a.attachs {
		errs = append(errs, att.Close())
	}
	for _, l := range a.loaded {
		errs = append(errs, l.Close())
	}
	a.attachs, a.loaded = nil, nil
	return errors.Join(errs...)
}
