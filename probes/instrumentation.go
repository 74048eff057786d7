package probes

import (
	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Instrumentation is one instrumented library: the BPF programs for it and
// the functions they go on.
type Instrumentation interface {
	// Name is how messages refer to it, such as "net/http server".
	Name() string
	// Fields lists the struct field offsets its programs need.
	Fields() (required, optional []offsets.Field)
	// Applies tells whether the target's binary contains the library.
	Applies(t *Target) bool
	// Spec returns its programs and maps with every constant set for t
	// (whose Offsets are resolved), ready to load.
	Spec(t *Target, shared *events.Shared) (*ebpf.CollectionSpec, error)
	// Load loads its programs for t, writing into the shared ring buffer.
	Load(t *Target, shared *events.Shared) (Loaded, error)
}

// Loaded is an instrumentation's programs loaded for one target.
type Loaded interface {
	// Uprobes says where each program goes.
	Uprobes() []Uprobe
	// Close unloads the programs and the instrumentation's own maps.
	Close() error
}
