// Package goroutines makes goroutines inherit the trace context of the
// goroutine that starts them, so that a client call made from a goroutine a
// handler started, however deep, is a child of the handler's span.
package goroutines

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/dbsql"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/nethttp/client"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is the runtime function every go statement goes through.
const Symbol = "runtime.newproc1"

// Instrumentation is the goroutine-ancestry instrumentation.
type Instrumentation struct{}

// Name implements probes.Instrumentation.
func (Instrumentation) Name() string { return "goroutine ancestry" }

// Fields implements probes.Instrumentation.
func (Instrumentation) Fields() (required, optional []offsets.Field) {
	return []offsets.Field{offsets.GoroutineID, offsets.GoroutineParentID}, nil
}

// Applies implements probes.Instrumentation: the inherited context is only
// read by client spans (HTTP calls, database calls), so it is only worth a
// probe where one of them can happen.
func (Instrumentation) Applies(t *probes.Target) bool {
	if _, err := t.Bin.Func(Symbol); err != nil {
		return false
	}
	return client.Instrumentation{}.Applies(t) || dbsql.Instrumentation{}.Applies(t)
}

// Spec implements probes.Instrumentation.
func (Instrumentation) Spec(t *probes.Target, _ *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadGoroutines()
	if err != nil {
		return nil, fmt.Errorf("goroutine ancestry: %w", err)
	}
	var specs goroutinesSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("goroutine ancestry: %w", err)
	}
	goid, _ := t.Offsets.Get(offsets.GoroutineID)
	parent, _ := t.Offsets.Get(offsets.GoroutineParentID)
	if err := specs.OffG_goid.Set(goid); err != nil {
		return nil, err
	}
	if err := specs.OffG_parentGoid.Set(parent); err != nil {
		return nil, err
	}
	return spec, nil
}

// Load implements probes.Instrumentation.
func (in Instrumentation) Load(t *probes.Target, shared *events.Shared) (probes.Loaded, error) {
	spec, err := in.Spec(t, shared)
	if err != nil {
		return nil, err
	}
	var objs goroutinesObjects
	opts := &ebpf.CollectionOptions{MapReplacements: shared.Replacements()}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		return nil, fmt.Errorf("%s: loading the goroutine ancestry program: %w", t, err)
	}
	return &loaded{objs: objs}, nil
}

type loaded struct{ objs goroutinesObjects }

func (l *loaded) Uprobes() []probes.Uprobe {
	return []probes.Uprobe{{Symbol: Symbol, Entry: l.objs.Newproc1Enter}}
}

func (l *loaded) Close() error { return l.objs.Close() }
