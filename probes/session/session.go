// Package session attaches every instrumentation that applies to a set of
// processes, all or nothing, and detaches them again.
package session

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/dbsql"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/nethttp/client"
	"github.com/zerotrace/zerotrace/probes/nethttp/server"
	"github.com/zerotrace/zerotrace/probes/offsets"
	"github.com/zerotrace/zerotrace/probes/runtime/goroutines"
)

// Options are the choices that change what is attached.
type Options struct {
	// InjectWriteUser makes the net/http client add the traceparent
	// header with bpf_probe_write_user (probes/inject chose write-user).
	InjectWriteUser bool
}

// Instrumentations lists every instrumentation zerotrace knows, in attach
// order, configured by opts. Adding one is adding a line here.
func Instrumentations(opts Options) []probes.Instrumentation {
	return []probes.Instrumentation{
		server.Instrumentation{},
		client.Instrumentation{InjectWriteUser: opts.InjectWriteUser},
		goroutines.Instrumentation{},
		dbsql.Instrumentation{},
	}
}

// Plan is what will be attached to one process.
type Plan struct {
	Target           *probes.Target
	Instrumentations []probes.Instrumentation
	// Notes are what the user should know about this process's plan.
	Notes []string
}

// Prepare inspects the process pid and decides what to attach, without
// touching the kernel. Errors are one line and name the process.
func Prepare(pid int, opts Options) (*Plan, error) {
	t, err := probes.OpenTarget(pid)
	if err != nil {
		return nil, err
	}
	p := &Plan{Target: t}
	var required, optional []offsets.Field
	var names []string
	for _, in := range Instrumentations(opts) {
		names = append(names, in.Name())
		if !in.Applies(t) {
			continue
		}
		p.Instrumentations = append(p.Instrumentations, in)
		r, o := in.Fields()
		required = append(required, r...)
		optional = append(optional, o...)
	}
	if len(p.Instrumentations) == 0 {
		t.Close()
		return nil, fmt.Errorf("%s: nothing to trace: the binary uses none of the supported libraries (%s)", t, strings.Join(names, ", "))
	}
	t.Offsets, err = offsets.Resolve(t.Bin, required, optional)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("%s, %s: %w", t, t.Bin.GoVersion, err)
	}
	// Without what the write-user injection needs, this process's
	// requests go out without context; everything else still works.
	for i, in := range p.Instrumentations {
		c, ok := in.(client.Instrumentation)
		if !ok || !c.InjectWriteUser {
			continue
		}
		if _, err := client.WriteUserReady(t); err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("no context injection: %v", err))
			p.Instrumentations[i] = client.Instrumentation{}
		} else {
			p.Notes = append(p.Notes, "injecting traceparent with bpf_probe_write_user at "+client.WriteSubsetSymbol)
		}
	}
	return p, nil
}

// Attached is a process with its programs loaded and attached.
type Attached struct {
	Plan    *Plan
	loaded  []probes.Loaded
	attachs []*probes.Attachment
	// Summary says what was attached, for the user.
	Summary string
}

// Attach loads and attaches every planned instrumentation. On error nothing
// stays attached or loaded.
func Attach(p *Plan, shared *events.Shared) (*Attached, error) {
	a := &Attached{Plan: p}
	var parts []string
	for _, in := range p.Instrumentations {
		l, err := in.Load(p.Target, shared)
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
		parts = append(parts, fmt.Sprintf("%s (%d entry + %d return uprobes)", in.Name(), att.Entries, att.Returns))
	}
	a.Summary = fmt.Sprintf("attached to %s, %s, offsets from %s: %s",
		p.Target, p.Target.Bin.GoVersion, p.Target.Offsets.Source, strings.Join(parts, ", "))
	return a, nil
}

// Detach removes every link, then unloads the programs.
func (a *Attached) Detach() error {
	var errs []error
	for _, att := range a.attachs {
		errs = append(errs, att.Close())
	}
	for _, l := range a.loaded {
		errs = append(errs, l.Close())
	}
	a.attachs, a.loaded = nil, nil
	return errors.Join(errs...)
}
