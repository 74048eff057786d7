package events

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Counter indexes the kernel-side loss counters (enum counter in
// bpf/common/maps.h, generated).
type Counter = commonCounter

// Kernel-side counters.
const (
	CounterRingbufFull  = commonCounterCOUNTER_RINGBUF_FULL
	CounterNoEntry      = commonCounterCOUNTER_NO_ENTRY
	CounterInflightFull = commonCounterCOUNTER_INFLIGHT_FULL
	CounterReadFailed   = commonCounterCOUNTER_READ_FAILED
	// Outgoing context injection (probes/inject), per request.
	CounterInjectArmed   = commonCounterCOUNTER_INJECT_ARMED
	CounterInjected      = commonCounterCOUNTER_INJECTED
	CounterInjectKept    = commonCounterCOUNTER_INJECT_KEPT
	CounterInjectSkipped = commonCounterCOUNTER_INJECT_SKIPPED
	CounterInjectFailed  = commonCounterCOUNTER_INJECT_FAILED
	// A forwarded traceparent (a proxy's caller's) got the client span as
	// its parent (sk-msg), or was left as it was (write-user).
	CounterInjectReplacedForwarded = commonCounterCOUNTER_INJECT_REPLACED_FORWARDED
	CounterInjectKeptForwarded     = commonCounterCOUNTER_INJECT_KEPT_FORWARDED
	// A child of a process traced from the kernel went untraced: the
	// kernel's table of traced processes was full.
	CounterTracedFull = commonCounterCOUNTER_TRACED_FULL
	// A write or read of a model call's body was not copied whole.
	CounterGenAIUncopied = commonCounterCOUNTER_GENAI_UNCOPIED
	// TLS plaintext whose socket could not be found went unreported.
	CounterTLSNoSocket = commonCounterCOUNTER_TLS_NO_SOCKET
	numCounters        = commonCounterCOUNTER_MAX
)

// String names the counter in logs and metrics.
func (c commonCounter) String() string {
	switch c {
	case CounterRingbufFull:
		return "ringbuf_full"
	case CounterNoEntry:
		return "return_without_entry"
	case CounterInflightFull:
		return "inflight_table_full"
	case CounterReadFailed:
		return "read_failed"
	case CounterInjectArmed:
		return "inject_armed"
	case CounterInjected:
		return "injected"
	case CounterInjectKept:
		return "inject_kept_existing"
	case CounterInjectSkipped:
		return "inject_skipped_unsafe"
	case CounterInjectFailed:
		return "inject_failed"
	case CounterTracedFull:
		return "traced_processes_full"
	case CounterInjectReplacedForwarded:
		return "inject_replaced_forwarded"
	case CounterInjectKeptForwarded:
		return "inject_kept_forwarded"
	case CounterGenAIUncopied:
		return "genai_bytes_uncopied"
	case CounterTLSNoSocket:
		return "tls_no_socket"
	}
	return fmt.Sprintf("counter_%d", int(c))
}

// Shared holds the one ring buffer and counters map that all probes write to.
type Shared struct {
	objs      commonObjects
	threshold uint64

	typesMu sync.Mutex
	types   *btf.Cache // the kernel's types while a burst of loading lasts
}

// DefaultRingSize is the ring buffer size in bytes: room for about 4,000
// HTTP records, a few hundred milliseconds of a busy service.
const DefaultRingSize = 4 << 20

// LoadShared creates the shared maps. ringSize must be a power of two
// multiple of the page size.
func LoadShared(ringSize int) (*Shared, error) {
	spec, err := loadCommon()
	if err != nil {
		return nil, fmt.Errorf("loading shared map spec: %w", err)
	}
	spec.Maps[commonMapEvents].MaxEntries = uint32(ringSize)
	s := &Shared{threshold: uint64(ringSize / 4)}
	if err := spec.LoadAndAssign(&s.objs.commonMaps, nil); err != nil {
		return nil, fmt.Errorf("creating the ring buffer and counters: %w", err)
	}
	return s, nil
}

// Replacements returns the map replacements a probe collection needs so
// that its programs write into the shared maps.
func (s *Shared) Replacements() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		commonMapEvents:       s.objs.Events,
		commonMapCounters:     s.objs.Counters,
		commonMapGoCtx:        s.objs.GoCtx,
		commonMapConnCtx:      s.objs.ConnCtx,
		commonMapConnCtxArmed: s.objs.ConnCtxArmed,
	}
}

// Options returns the options every probe collection loads with: replace
// as its map replacements, and the kernel's types shared by all loads until
// ReleaseKernelTypes. Without the sharing, each collection decodes the
// kernel's BTF anew for its CO-RE relocations: on a kernel whose
// /sys/kernel/btf/vmlinux cannot be mapped (before Linux 6.16) that is a
// 5-6 MB read onto the heap per collection, about 60 MB of garbage for one
// Go process's probes, and a heap that size leaves runtime metadata and
// fragments resident for the agent's life.
func (s *Shared) Options(replace map[string]*ebpf.Map) *ebpf.CollectionOptions {
	s.typesMu.Lock()
	defer s.typesMu.Unlock()
	if s.types == nil {
		s.types = btf.NewCache()
	}
	return &ebpf.CollectionOptions{MapReplacements: replace, Cache: s.types}
}

// ReleaseKernelTypes drops the kernel's types once a burst of loading is
// over, so that they are not held for the agent's life; the next load
// decodes them again.
func (s *Shared) ReleaseKernelTypes() {
	s.typesMu.Lock()
	s.types = nil
	s.typesMu.Unlock()
}

// WakeupThreshold is the value every probe must get for its
// wakeup_threshold constant: the fill level past which records wake the reader.
func (s *Shared) WakeupThreshold() uint64 { return s.threshold }

// SharedConstants are the constants of bpf/common/maps.h, which every
// object has and SetConstants sets.
func SharedConstants() []string { return []string{commonVarWakeupThreshold} }

// SetConstants sets, in the spec of any object, the constants of
// bpf/common/maps.h.
func (s *Shared) SetConstants(spec *ebpf.CollectionSpec) error {
	for _, name := range SharedConstants() {
		v, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("the object has no %s (does it include common/maps.h?)", name)
		}
		if err := v.Set(s.threshold); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// Counters sums the per-CPU kernel counters.
func (s *Shared) Counters() (map[Counter]uint64, error) {
	out := make(map[Counter]uint64, numCounters)
	var perCPU []uint64
	for c := Counter(0); c < numCounters; c++ {
		if err := s.objs.Counters.Lookup(uint32(c), &perCPU); err != nil {
			return nil, fmt.Errorf("reading counter %s: %w", c, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		if sum != 0 {
			out[c] = sum
		}
	}
	return out, nil
}

// Close releases the maps.
func (s *Shared) Close() error {
	return errors.Join(s.objs.Events.Close(), s.objs.Counters.Close(), s.objs.GoCtx.Close(), s.objs.ConnCtx.Close(), s.objs.ConnCtxArmed.Close())
}
