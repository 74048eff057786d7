package probes

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// A Go library instrumentation is data: a Declaration of its uprobes, the
// struct fields its programs read, the functions whose addresses they
// compare against and the optional parts these serve, written once in the
// instrumentation's folder over the types bpf2go generated for its BPF
// object. From it the generic loader (PlanTarget, Planned.Load) derives
// everything else: whether the instrumentation applies to a binary, the
// offsets to resolve, every `volatile const` value (offsets, read sizes,
// addresses, flags), which programs to load and where each one goes, and
// what to report when something is missing.

// Declaration describes one instrumentation. Its *ebpf.ProgramSpec and
// *ebpf.VariableSpec values are the fields of the instrumentation's
// bpf2go-generated specs type, which Declare hands to the function that
// builds it: programs and constants are named by Go fields, never by
// strings.
type Declaration struct {
	// Uprobes are the probed functions and the programs that go on them.
	Uprobes []Uprobe
	// Reads are the struct fields the programs read.
	Reads []Read
	// Funcs are functions whose run-time address a program gets.
	Funcs []Func
	// Frames are stack frames a program reads at the entry of a function
	// that another one deferred.
	Frames []Frame
	// OnlyWith, when set, makes the instrumentation a helper of others: it
	// applies only when another instrumentation that applies reads this
	// field. Goroutine ancestry only matters to instrumentations that look
	// for context in a goroutine's parent (runtime.g.parentGoid).
	OnlyWith offsets.Field
}

// Uprobe is one probed Go function and the programs on it. Where each
// program goes is fixed: Entry on the function's entry, Return on every RET
// instruction (see AttachUprobes).
//
// A span usually starts at one function's entry and ends at the entry of
// another, one that runs once the work is done (an emulated instruction,
// where a RET is single-stepped): two Uprobes, each with an Entry. They are
// attached in the order declared and detached in the reverse order, so the
// ends go first: a span may then end without having started (its end
// program finds nothing), never start without its end in place.
type Uprobe struct {
	// Symbol is the function's name in the Go symbol table, such as
	// "net/http.serverHandler.ServeHTTP".
	Symbol string
	// Entry goes on the function's entry: its stack-check jump, which the
	// kernel emulates in place, or its first instruction (gobin.EntryOffset).
	// Nil when only the returns are probed.
	Entry *ebpf.ProgramSpec
	// Return goes on every RET instruction of the function, never a
	// uretprobe (which crashes Go programs). Nil when only the entry is
	// probed.
	Return *ebpf.ProgramSpec
	// Optional uprobes are left out, without a word, when the binary lacks
	// the function: the program never calls it (the linker dropped it), so
	// there is nothing there to trace.
	Optional bool
	// Part is the optional part this uprobe serves; nil for the
	// instrumentation itself.
	Part *Part
	// At, when set, places Entry not at the function's entry but on the
	// instruction At finds in the binary's code (gobin.CallResultSite: the
	// emulated jump after a call, where its results are still in their
	// registers), and Slots[i] gets the i-th stack slot it found (signed
	// constants). Such a uprobe must serve a Part: where At finds nothing,
	// the part is missing, never the instrumentation.
	At    func(b *gobin.Binary, f gobin.Func) (gobin.CallResult, error)
	Slots []*ebpf.VariableSpec
}

// Read is one struct field a program reads.
type Read struct {
	Field offsets.Field
	// Alt are the same field under other names, tried in order when the
	// binary has no Field: a type the standard library renamed or moved
	// between Go versions (the bundled HTTP/2 server's
	// net/http.http2responseWriterState is
	// net/http/internal/http2.responseWriterState since Go 1.27).
	Alt []offsets.Field
	// Offset is the constant that gets the field's offset.
	Offset *ebpf.VariableSpec
	// Size is how many bytes the program reads at that offset.
	Size uint64
	// In is the struct copy the field is read from, when the program copies
	// the start of the struct in one read; nil when the field is read on
	// its own.
	In *Copy
	// Part is the optional part this field serves; nil when the
	// instrumentation cannot do without it.
	Part *Part
}

// Fields lists the field and its other names.
func (r Read) Fields() []offsets.Field {
	return append([]offsets.Field{r.Field}, r.Alt...)
}

// Sizes of the Go values a program commonly reads.
const (
	Word   uint64 = 8  // a pointer, int, int64, uintptr
	String uint64 = 16 // a string header
	Iface  uint64 = 16 // an interface value
	Slice  uint64 = 24 // a slice header
)

// Copy is a program's copy of the start of one struct, made in one read
// into a buffer of Max bytes. Its size, the constant Size, is the end of the
// last field read from it, so that the read never goes past the object.
type Copy struct {
	// Struct names the struct, for messages.
	Struct string
	// Size is the constant that gets the number of bytes to copy.
	Size *ebpf.VariableSpec
	// Max is the size of the program's buffer.
	Max uint64
}

// Func is a function whose run-time address a program gets, to recognise
// the concrete type behind an interface by its itab's first method
// (pclntab gives it even in stripped binaries).
type Func struct {
	Symbol string
	// Addr is the constant that gets the address; 0 turns off what depends
	// on it.
	Addr *ebpf.VariableSpec
	// Part is the optional part this function serves; nil when the
	// instrumentation cannot do without it.
	Part *Part
	// Optional functions may be missing without a word: the program never
	// uses the type they recognise, so there is nothing to recognise, and
	// the address stays 0.
	Optional bool
}

// Frame is a function whose stack frame a program reads at the entry of a
// call the function defers, to end a span there (an emulated instruction)
// rather than on the function's RETs (single-stepped): while deferred calls
// run, the function keeps its results in stack slots. Where those slots
// are depends on the build, so the loader finds them in the function's code
// (gobin.ResultSlots, gobin.ClosureSlot); when it cannot, the frame's part
// is missing, and its Instead part, if any, runs in its place.
type Frame struct {
	// Symbol is the function whose frame is read.
	Symbol string
	// Results[i] gets the offset, from Symbol's stack pointer, of the slot
	// of its i-th result word (the word returned in the i-th result
	// register: RAX, RBX, RCX, RDI, ...); nil for a word not read. The
	// constants are signed (__s64).
	Results []*ebpf.VariableSpec
	// Captured, when set, gets the offset within the closure of Deferred
	// that Symbol builds for its defer of the pointer that closure holds to
	// the slot of result word CapturedWord (a closure capturing a named
	// result, such as err): the program finds the frame through the
	// closure (RDX at its entry).
	Captured     *ebpf.VariableSpec
	Deferred     string
	CapturedWord int
	// Start and End, when set, get Symbol's run-time address range: a
	// program that finds the frame through its own stack pointer checks
	// that its return address is in Symbol, i.e. that Symbol called it
	// directly rather than the runtime after a recovered panic.
	Start, End *ebpf.VariableSpec
	// Part is the optional part that needs the frame.
	Part *Part
}

// Part is an optional part of an instrumentation: what some of its fields,
// functions and uprobes add. When one of them is missing the part is left
// out, its constants stay zero (which the programs take to mean "skip
// this"), and the instrumentation runs without it, degraded.
type Part struct {
	// Gives says what the part adds, in terms of what a span loses
	// without it: the attributes ("http.route") or the behaviour.
	Gives string
	// Flag, when set, is a constant that gets 1 when the part is on.
	Flag *ebpf.VariableSpec
	// Option, when set, turns the part on only when it says so: a choice
	// of the user's (or of the kernel's) rather than of the binary's.
	Option func(Options) bool
	// Requires are parts without which this one cannot run.
	Requires []*Part
	// Instead, when set, makes this part the fallback of another: it runs
	// only when that part is missing, and is then reported as what runs in
	// its place (Planned.Fallbacks) rather than as a loss; typically RET
	// probes where an emulated entry cannot be used.
	Instead *Part
}

// Options are the choices, made before any process is inspected, that
// change what is attached.
type Options struct {
	// InjectWriteUser makes the net/http client add the traceparent
	// header with bpf_probe_write_user (probes/inject chose write-user).
	InjectWriteUser bool
	// Phases tells that the configuration names functions to trace
	// (probes/phases): helpers that serve context to spans (goroutine
	// ancestry, Declaration.OnlyWith) then apply whatever else does.
	Phases bool
}

// WriteUser tells whether the write-user context injection is chosen: the
// Option of the parts that need it.
func (o Options) WriteUser() bool { return o.InjectWriteUser }

// Probe is one declared instrumentation, ready for the generic loader.
type Probe struct {
	name    string
	load    func() (*ebpf.CollectionSpec, error)
	declare func(*ebpf.CollectionSpec) (Declaration, error)
	records []events.Record
	pkg     string

	mu   sync.Mutex
	base *ebpf.CollectionSpec // the embedded object parsed, until ReleaseSpecs
}

// declared are all the Probes, for ReleaseSpecs.
var declared struct {
	sync.Mutex
	probes []*Probe
}

// ReleaseSpecs drops every instrumentation's parsed object once a burst of
// attaching is over: about 2.5 MB of heap for the four Go ones, held for
// the agent's life otherwise. The next Spec parses the embedded object
// again, a few milliseconds.
func ReleaseSpecs() {
	declared.Lock()
	defer declared.Unlock()
	for _, p := range declared.probes {
		p.mu.Lock()
		p.base = nil
		p.mu.Unlock()
	}
}

// Declare makes an instrumentation called name from its bpf2go output:
// load is the generated loadX function, S the generated XSpecs type, and
// declare builds the declaration from an S assigned from a fresh copy of
// the spec. records are the ring-buffer records its programs send.
func Declare[S any](name string, load func() (*ebpf.CollectionSpec, error), declare func(*S) Declaration, records ...events.Record) *Probe {
	p := &Probe{
		name: name,
		load: load,
		declare: func(spec *ebpf.CollectionSpec) (Declaration, error) {
			var s S
			if err := spec.Assign(&s); err != nil {
				return Declaration{}, err
			}
			return declare(&s), nil
		},
		records: records,
		pkg:     reflect.TypeFor[S]().PkgPath(),
	}
	declared.Lock()
	declared.probes = append(declared.probes, p)
	declared.Unlock()
	return p
}

// Name is how messages refer to the instrumentation, such as
// "net/http server".
func (p *Probe) Name() string { return p.name }

// Records are the ring-buffer records the instrumentation's programs send.
func (p *Probe) Records() []events.Record { return p.records }

// Package is the import path of the instrumentation's Go package.
func (p *Probe) Package() string { return p.pkg }

// Spec returns a fresh copy of the instrumentation's programs and maps, no
// constant set, with its declaration, which refers into that copy.
func (p *Probe) Spec() (*ebpf.CollectionSpec, Declaration, error) {
	spec, err := p.copySpec()
	if err != nil {
		return nil, Declaration{}, err
	}
	d, err := p.declare(spec)
	if err != nil {
		return nil, Declaration{}, fmt.Errorf("%s: %w", p.name, err)
	}
	return spec, d, nil
}

// copySpec returns a copy of the embedded object, parsed once until
// ReleaseSpecs.
func (p *Probe) copySpec() (*ebpf.CollectionSpec, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.base == nil {
		base, err := p.load()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		p.base = base
	}
	return p.base.Copy(), nil
}

// Constants lists every constant the declaration sets, the shared ones
// (events.Shared) aside.
func (d *Declaration) Constants() []*ebpf.VariableSpec {
	var vs []*ebpf.VariableSpec
	seen := map[*ebpf.VariableSpec]bool{}
	add := func(v *ebpf.VariableSpec) {
		if v != nil && !seen[v] {
			seen[v] = true
			vs = append(vs, v)
		}
	}
	for _, r := range d.Reads {
		add(r.Offset)
		if r.In != nil {
			add(r.In.Size)
		}
	}
	for _, f := range d.Funcs {
		add(f.Addr)
	}
	for _, fr := range d.Frames {
		for _, v := range fr.Results {
			add(v)
		}
		add(fr.Captured)
		add(fr.Start)
		add(fr.End)
	}
	for _, u := range d.Uprobes {
		for _, v := range u.Slots {
			add(v)
		}
	}
	for _, p := range d.Parts() {
		add(p.Flag)
	}
	return vs
}

// Parts lists the optional parts the declaration refers to, in the order
// they first appear.
func (d *Declaration) Parts() []*Part {
	var parts []*Part
	seen := map[*Part]bool{}
	var add func(p *Part)
	add = func(p *Part) {
		if p == nil || seen[p] {
			return
		}
		seen[p] = true
		for _, r := range p.Requires {
			add(r)
		}
		add(p.Instead)
		parts = append(parts, p)
	}
	for _, u := range d.Uprobes {
		add(u.Part)
	}
	for _, r := range d.Reads {
		add(r.Part)
	}
	for _, f := range d.Funcs {
		add(f.Part)
	}
	for _, fr := range d.Frames {
		add(fr.Part)
	}
	return parts
}

// Programs lists every program the declaration places.
func (d *Declaration) Programs() []*ebpf.ProgramSpec {
	var ps []*ebpf.ProgramSpec
	seen := map[*ebpf.ProgramSpec]bool{}
	for _, u := range d.Uprobes {
		for _, p := range []*ebpf.ProgramSpec{u.Entry, u.Return} {
			if p != nil && !seen[p] {
				seen[p] = true
				ps = append(ps, p)
			}
		}
	}
	return ps
}
