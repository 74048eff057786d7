package probes

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// State is what became of one instrumentation for one process.
type State int

// States of an instrumentation.
const (
	// NotApplicable: the binary does not use the library.
	NotApplicable State = iota
	// Active: everything the instrumentation reads is there.
	Active
	// Degraded: it runs without some optional parts (Planned.Missing).
	Degraded
	// Disabled: something it cannot do without is missing (Planned.Why).
	Disabled
)

// String names the state as reports say it.
func (s State) String() string {
	switch s {
	case Active:
		return "active"
	case Degraded:
		return "degraded"
	case Disabled:
		return "disabled"
	}
	return "not applicable"
}

// Missing is an optional part left out, and why.
type Missing struct {
	// Gives is what the part would have added (Part.Gives).
	Gives string
	// Why names what is missing and why.
	Why string
	// Chosen is set for a part the user turned on (Part.Option).
	Chosen bool
}

// Planned is one instrumentation planned for one target: what it will do,
// and the values of its programs' constants, or why it will not run.
type Planned struct {
	Probe *Probe
	State State
	// Why says, for Disabled and NotApplicable, why.
	Why string
	// Err is what made it Disabled (a missing field's error, such as one
	// wrapping offsets.ErrUnknownVersion).
	Err error
	// Missing lists, for Degraded, the parts left out.
	Missing []Missing
	// On lists the parts an option turned on that run.
	On []string
	// Fallbacks lists the parts that run in the place of a missing one
	// (Part.Instead), and why.
	Fallbacks []Fallback

	// What Spec rebuilds from the probe's object: the constants' values
	// and the programs to keep, by name, and where the programs go. A
	// plan lives as long as its process: it keeps no copy of the object.
	target  *Target
	consts  map[string]uint64
	keep    map[string]bool
	uprobes []placed
	reads   map[offsets.Field]bool
}

// Fallback is a part that runs because the part it stands in for cannot.
type Fallback struct {
	// Gives is what runs (the fallback's Part.Gives), Instead what could
	// not (the missing part's), Why why not.
	Gives, Instead, Why string
}

// placed is a probed function and the names of its programs ("" for none);
// at, when not 0, is the file offset the entry program goes on instead of
// the function's entry (Uprobe.At).
type placed struct {
	symbol, entry, ret string
	at                 uint64
}

// Name is the instrumentation's name.
func (p *Planned) Name() string { return p.Probe.Name() }

// Runs tells whether the instrumentation is to be attached.
func (p *Planned) Runs() bool { return p.State == Active || p.State == Degraded }

// Spec returns the instrumentation's programs and maps for its target,
// every constant set (shared's too), ready to load with
// shared.Replacements(): only the programs it attaches.
func (p *Planned) Spec(shared *events.Shared) (*ebpf.CollectionSpec, error) {
	if !p.Runs() {
		return nil, fmt.Errorf("%s: %s is %s", p.target, p.Name(), p.State)
	}
	spec, err := p.Probe.copySpec()
	if err != nil {
		return nil, err
	}
	for name := range spec.Programs {
		if !p.keep[name] {
			delete(spec.Programs, name)
		}
	}
	for name, x := range p.consts {
		v, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("%s: %s has no constant %s", p.target, p.Name(), name)
		}
		if err := setUint(v, x); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p.target, p.Name(), err)
		}
	}
	if err := shared.SetConstants(spec); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", p.target, p.Name(), err)
	}
	return spec, nil
}

// Loaded is an instrumentation's programs loaded for one target.
type Loaded struct {
	coll    *ebpf.Collection
	uprobes []AttachUprobe
}

// Uprobes says where each program goes.
func (l *Loaded) Uprobes() []AttachUprobe { return l.uprobes }

// Close unloads the programs and the instrumentation's own maps.
func (l *Loaded) Close() error {
	l.coll.Close()
	return nil
}

// Load loads the instrumentation's programs, writing into the shared ring
// buffer.
func (p *Planned) Load(shared *events.Shared) (*Loaded, error) {
	spec, err := p.Spec(shared)
	if err != nil {
		return nil, err
	}
	dropUnusedMaps(spec)
	replace := shared.Replacements()
	for name := range replace {
		if _, ok := spec.Maps[name]; !ok {
			delete(replace, name) // not used by these programs
		}
	}
	sizeForOneProcess(spec, replace)
	coll, err := ebpf.NewCollectionWithOptions(spec, *shared.Options(replace))
	if err != nil {
		return nil, fmt.Errorf("%s: loading the %s programs: %w", p.target, p.Name(), err)
	}
	l := &Loaded{coll: coll}
	for _, u := range p.uprobes {
		l.uprobes = append(l.uprobes, AttachUprobe{
			Symbol: u.symbol, Entry: coll.Programs[u.entry], Return: coll.Programs[u.ret],
			EntryName: u.entry, ReturnName: u.ret, At: u.at,
		})
	}
	return l, nil
}

// PlanTarget decides, for every instrumentation in all, what it can do for
// t, without touching the kernel: whether it applies, which of its parts
// run, and its constants. It resolves t.Offsets. The error says, in one
// line, why nothing at all can be traced; otherwise every instrumentation
// that cannot run says why in its Planned.
func PlanTarget(t *Target, all []*Probe, opts Options) ([]*Planned, error) {
	type candidate struct {
		planned *Planned
		decl    Declaration
		spec    *ebpf.CollectionSpec // the copy decl refers into
	}
	var cands []*candidate
	var fields []offsets.Field
	var names []string
	for _, p := range all {
		names = append(names, p.Name())
		spec, decl, err := p.Spec()
		if err != nil {
			return nil, err
		}
		c := &candidate{planned: &Planned{Probe: p, target: t}, decl: decl, spec: spec}
		cands = append(cands, c)
		if why := applies(t, &decl); why != "" {
			c.planned.Why = why
			continue
		}
		for _, r := range decl.Reads {
			if r.Part == nil || r.Part.Option == nil || r.Part.Option(opts) {
				fields = append(fields, r.Fields()...)
			}
		}
	}
	var err error
	if t.Offsets, err = offsets.ResolveAll(t.Bin, fields); err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	for _, c := range cands {
		if c.planned.Why == "" {
			(&planner{t: t, opts: opts, decl: &c.decl, out: c.planned}).plan()
			c.spec = nil
		}
	}
	// Helpers run only for an instrumentation that runs and needs them.
	for _, c := range cands {
		with := c.decl.OnlyWith
		if with == (offsets.Field{}) || !c.planned.Runs() {
			continue
		}
		// Phases read the ancestry too (bpf/phases), from outside the plan.
		needed := opts.Phases
		for _, o := range cands {
			needed = needed || (o != c && o.planned.Runs() && o.planned.reads[with])
		}
		if !needed {
			*c.planned = Planned{Probe: c.planned.Probe, target: t, State: NotApplicable,
				Why: "no instrumentation that applies reads " + with.String()}
		}
	}
	out := make([]*Planned, len(cands))
	for i, c := range cands {
		out[i] = c.planned
	}
	if err := nothingToTrace(t, out, names); err != nil {
		return nil, err
	}
	return out, nil
}

// nothingToTrace is the error for a target none of whose instrumentations
// can run, nil when one can.
func nothingToTrace(t *Target, planned []*Planned, names []string) error {
	var disabled []*Planned
	for _, p := range planned {
		if p.Runs() {
			return nil
		}
		if p.State == Disabled {
			disabled = append(disabled, p)
		}
	}
	if len(disabled) == 0 {
		return fmt.Errorf("%s: nothing to trace: the binary uses none of the supported libraries (%s)", t, strings.Join(names, ", "))
	}
	// Usually one cause disables them all (no offsets for this Go
	// version): say it once.
	causes := map[string]bool{}
	for _, p := range disabled {
		causes[errString(p.Err)] = true
	}
	if len(causes) == 1 && disabled[0].Err != nil {
		return fmt.Errorf("%s, %s: nothing can be traced: %w", t, t.Bin.GoVersion, disabled[0].Err)
	}
	var whys []string
	for _, p := range disabled {
		whys = append(whys, p.Name()+": "+p.Why)
	}
	return fmt.Errorf("%s, %s: nothing can be traced: %s", t, t.Bin.GoVersion, strings.Join(whys, "; "))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// applies says why the declaration does not apply to t's binary, or "" when
// it does: the binary must have each of its required functions and at least
// one of the functions it probes.
func applies(t *Target, d *Declaration) string {
	found := false
	for _, u := range d.Uprobes {
		_, err := t.Bin.Func(u.Symbol)
		switch {
		case err == nil:
			found = true
		case u.Part == nil && !u.Optional:
			return "the binary has no " + u.Symbol
		}
	}
	if !found {
		var syms []string
		for _, u := range d.Uprobes {
			syms = append(syms, u.Symbol)
		}
		return "the binary has none of " + strings.Join(syms, ", ")
	}
	return ""
}

// partState is what became of one optional part.
type partState int

const (
	partOn      partState = iota
	partOff               // its option is not chosen
	partAbsent            // its optional functions are not in the binary
	partMissing           // something it needs is missing
)

type planner struct {
	t      *Target
	opts   Options
	decl   *Declaration
	out    *Planned
	parts  map[*Part]partState
	whys   map[*Part]string
	frames map[*Frame]frameLayout
	sites  map[int]gobin.CallResult // by index in decl.Uprobes, for those with At
}

// frameLayout is what was found of a Frame in the function's code.
type frameLayout struct {
	results    []int64
	captured   int64
	start, end uint64
}

// plan evaluates the declaration for the target and sets the constants.
func (pl *planner) plan() {
	pl.parts = map[*Part]partState{}
	pl.whys = map[*Part]string{}
	pl.frames = map[*Frame]frameLayout{}
	pl.sites = map[int]gobin.CallResult{}
	if why, err := pl.missingIn(nil); why != "" {
		pl.disable(why, err)
		return
	}
	for _, p := range pl.decl.Parts() {
		switch pl.part(p) {
		case partOn:
			if p.Option != nil {
				pl.out.On = append(pl.out.On, p.Gives)
			}
		case partMissing:
			if fb := pl.fallbackOf(p); fb != nil {
				pl.out.Fallbacks = append(pl.out.Fallbacks, Fallback{Gives: fb.Gives, Instead: p.Gives, Why: pl.whys[p]})
				continue
			}
			pl.out.Missing = append(pl.out.Missing, Missing{Gives: p.Gives, Why: pl.whys[p], Chosen: p.Option != nil})
		}
	}
	on := func(p *Part) bool { return p == nil || pl.parts[p] == partOn }

	// Where each program goes: the uprobes of the parts that run, on the
	// functions the binary has.
	pl.out.keep = map[string]bool{}
	for i, u := range pl.decl.Uprobes {
		if !on(u.Part) {
			continue
		}
		if _, err := pl.t.Bin.Func(u.Symbol); err != nil {
			continue // optional, or a part's that is absent
		}
		pl.out.uprobes = append(pl.out.uprobes, placed{symbol: u.Symbol, entry: progName(u.Entry), ret: progName(u.Return), at: pl.sites[i].Offset})
		pl.out.keep[progName(u.Entry)], pl.out.keep[progName(u.Return)] = true, true
	}
	delete(pl.out.keep, "")
	if len(pl.out.uprobes) == 0 {
		pl.disable("none of the functions it probes can be probed", nil)
		return
	}

	// The constants.
	set := map[*ebpf.VariableSpec]uint64{}
	sizes := map[*Copy]uint64{}
	pl.out.reads = map[offsets.Field]bool{}
	for _, r := range pl.decl.Reads {
		if r.In != nil {
			if _, ok := sizes[r.In]; !ok {
				sizes[r.In] = 0
			}
		}
		if !on(r.Part) {
			set[r.Offset] += 0
			continue
		}
		f, off, _ := pl.resolved(r)
		set[r.Offset] = off
		pl.out.reads[f] = true
		if r.In != nil {
			sizes[r.In] = max(sizes[r.In], off+r.Size)
		}
	}
	for c, n := range sizes {
		if n > c.Max {
			pl.disable(fmt.Sprintf("the fields it reads from %s end at byte %d, past the program's %d-byte copy", c.Struct, n, c.Max), nil)
			return
		}
		set[c.Size] = n
	}
	for _, f := range pl.decl.Funcs {
		set[f.Addr] = 0
		if on(f.Part) {
			set[f.Addr] = pl.t.FuncAddr(f.Symbol)
		}
	}
	for i := range pl.decl.Frames {
		fr := &pl.decl.Frames[i]
		lay, found := pl.frames[fr]
		found = found && on(fr.Part)
		for i, v := range fr.Results {
			if v != nil {
				set[v] = 0
				if found {
					set[v] = uint64(lay.results[i])
				}
			}
		}
		for v, x := range map[*ebpf.VariableSpec]uint64{fr.Captured: uint64(lay.captured), fr.Start: lay.start, fr.End: lay.end} {
			if v != nil {
				set[v] = 0
				if found {
					set[v] = x
				}
			}
		}
	}
	for i, u := range pl.decl.Uprobes {
		site, found := pl.sites[i]
		for k, v := range u.Slots {
			set[v] = 0
			if found && on(u.Part) && k < len(site.Slots) {
				set[v] = uint64(site.Slots[k])
			}
		}
	}
	for _, p := range pl.decl.Parts() {
		if p.Flag != nil {
			set[p.Flag] = 0
			if on(p) {
				set[p.Flag] = 1
			}
		}
	}
	pl.out.consts = map[string]uint64{}
	for v, x := range set {
		// Set once here, on the planning copy, so that a constant of a
		// size the loader cannot set disables the plan rather than the
		// load.
		if err := setUint(v, x); err != nil {
			pl.disable(err.Error(), err)
			return
		}
		pl.out.consts[v.Name] = x
	}
	pl.out.State = Active
	if len(pl.out.Missing) > 0 {
		pl.out.State = Degraded
	}
}

func (pl *planner) disable(why string, err error) {
	*pl.out = Planned{Probe: pl.out.Probe, target: pl.t, State: Disabled, Why: why, Err: err}
}

// part evaluates an optional part, once.
func (pl *planner) part(p *Part) partState {
	if s, ok := pl.parts[p]; ok {
		return s
	}
	pl.parts[p] = partMissing // a part that requires itself
	s := pl.evalPart(p)
	pl.parts[p] = s
	return s
}

// fallbackOf is the part that runs instead of p, nil when none does.
func (pl *planner) fallbackOf(p *Part) *Part {
	for _, q := range pl.decl.Parts() {
		if q.Instead == p && pl.part(q) == partOn {
			return q
		}
	}
	return nil
}

func (pl *planner) evalPart(p *Part) partState {
	if p.Option != nil && !p.Option(pl.opts) {
		return partOff
	}
	if p.Instead != nil {
		// A fallback runs only where what it stands in for cannot.
		if s := pl.part(p.Instead); s != partMissing {
			if s == partOn {
				return partOff
			}
			return s
		}
	}
	for _, r := range p.Requires {
		if s := pl.part(r); s != partOn {
			pl.whys[p] = "it needs " + r.Gives
			if w := pl.whys[r]; w != "" {
				pl.whys[p] += " (" + w + ")"
			}
			return s
		}
	}
	// A part whose functions (probed or recognised) are all optional and
	// absent has nothing to do in this binary.
	var items, present int
	optional := true
	for _, u := range pl.decl.Uprobes {
		if u.Part != p {
			continue
		}
		items++
		optional = optional && u.Optional
		if _, err := pl.t.Bin.Func(u.Symbol); err == nil {
			present++
		} else if !u.Optional {
			pl.whys[p] = "the binary has no " + u.Symbol
			return partMissing
		}
	}
	for _, f := range pl.decl.Funcs {
		if f.Part != p {
			continue
		}
		items++
		optional = optional && f.Optional
		if _, err := pl.t.Bin.Func(f.Symbol); err == nil {
			present++
		}
	}
	if items > 0 && present == 0 && optional {
		return partAbsent
	}
	if why, _ := pl.missingIn(p); why != "" {
		pl.whys[p] = why
		return partMissing
	}
	for i, u := range pl.decl.Uprobes {
		if u.Part != p || u.At == nil {
			continue
		}
		fn, err := pl.t.Bin.Func(u.Symbol)
		if err != nil {
			continue // optional and absent
		}
		site, err := u.At(pl.t.Bin, fn)
		if err != nil {
			pl.whys[p] = err.Error()
			return partMissing
		}
		pl.sites[i] = site
	}
	return partOn
}

// missingIn says what of the fields and functions of part p (nil: of the
// instrumentation itself) the target lacks, and the error behind it.
func (pl *planner) missingIn(p *Part) (string, error) {
	for _, r := range pl.decl.Reads {
		if r.Part != p {
			continue
		}
		if _, _, ok := pl.resolved(r); ok {
			continue
		}
		if err := pl.t.Offsets.Missing(r.Field); err != nil {
			return fmt.Sprintf("%s: %v", r.Field, err), err
		}
		err := errors.New("offset not resolved")
		return fmt.Sprintf("%s: %v", r.Field, err), err
	}
	for _, f := range pl.decl.Funcs {
		if f.Part != p || f.Optional {
			continue
		}
		if _, err := pl.t.Bin.Func(f.Symbol); err != nil {
			return "the binary has no " + f.Symbol, err
		}
	}
	for i := range pl.decl.Frames {
		fr := &pl.decl.Frames[i]
		if fr.Part != p {
			continue
		}
		lay, err := pl.layout(fr)
		if err != nil {
			return err.Error(), err
		}
		pl.frames[fr] = lay
	}
	return "", nil
}

// Sizes of the maps an instrumentation loads for each process it traces.
const (
	// perProcessLRUEntries caps an LRU map of one process: calls in
	// progress at once in one process, whose oldest are evicted beyond.
	perProcessLRUEntries = 4096
	// perProcessLRUBytes caps it further when its entries are large (a
	// query's text): a database pool rarely has more than a hundred
	// connections busy at once.
	perProcessLRUBytes = 1 << 20
	// perProcessLRUMinEntries is what the byte cap never goes below.
	perProcessLRUMinEntries = 1024
)

// sizeForOneProcess sizes the maps the programs of one process own (those
// not replaced by the shared ones) for one process: the objects declare
// them for the busiest program imaginable, and the kernel allocates an LRU
// or hash map whole when it is created, for each process traced. A hash
// map allocates its entries as they are added instead (a request in
// progress costs its entry, an idle process nothing); an LRU map, which
// cannot, is capped (perProcessLRU*).
func sizeForOneProcess(spec *ebpf.CollectionSpec, shared map[string]*ebpf.Map) {
	for name, m := range spec.Maps {
		if _, ok := shared[name]; ok {
			continue
		}
		switch m.Type {
		case ebpf.Hash:
			m.Flags |= unix.BPF_F_NO_PREALLOC
		case ebpf.LRUHash:
			entries := uint32(perProcessLRUEntries)
			if size := m.KeySize + m.ValueSize; size > 0 {
				entries = min(entries, max(perProcessLRUMinEntries, perProcessLRUBytes/size))
			}
			m.MaxEntries = min(m.MaxEntries, entries)
		}
	}
}

// resolved is the first of a read's names the target has, and its offset.
func (pl *planner) resolved(r Read) (offsets.Field, uint64, bool) {
	for _, f := range r.Fields() {
		if off, ok := pl.t.Offsets.Get(f); ok {
			return f, off, true
		}
	}
	return r.Field, 0, false
}

// layout finds a frame's slots in its function's code.
func (pl *planner) layout(fr *Frame) (frameLayout, error) {
	fn, err := pl.t.Bin.Func(fr.Symbol)
	if err != nil {
		return frameLayout{}, err
	}
	lay := frameLayout{start: pl.t.RuntimeAddr(fn.Addr), end: pl.t.RuntimeAddr(fn.End)}
	if lay.results, err = pl.t.Bin.ResultSlots(fn, len(fr.Results)); err != nil {
		return frameLayout{}, err
	}
	if fr.Captured != nil {
		deferred, err := pl.t.Bin.Func(fr.Deferred)
		if err != nil {
			return frameLayout{}, err
		}
		if fr.CapturedWord >= len(lay.results) {
			return frameLayout{}, fmt.Errorf("%s: result word %d is not read", fr.Symbol, fr.CapturedWord)
		}
		if lay.captured, err = pl.t.Bin.ClosureSlot(fn, deferred, lay.results[fr.CapturedWord]); err != nil {
			return frameLayout{}, err
		}
	}
	return lay, nil
}

// dropUnusedMaps removes the maps no program of spec uses, with their
// variables: the maps of the programs left out, and the data section that
// only holds the anchors putting types into BTF (unused_* in the C).
func dropUnusedMaps(spec *ebpf.CollectionSpec) {
	used := map[string]bool{}
	for _, p := range spec.Programs {
		for _, ins := range p.Instructions {
			if ref := ins.Reference(); ref != "" {
				used[ref] = true
			}
		}
	}
	for name := range spec.Maps {
		if !used[name] {
			delete(spec.Maps, name)
		}
	}
	for name, v := range spec.Variables {
		if _, ok := spec.Maps[v.SectionName]; !ok {
			delete(spec.Variables, name)
		}
	}
}

func progName(p *ebpf.ProgramSpec) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// setUint sets a constant of 1, 2, 4 or 8 bytes to x.
func setUint(v *ebpf.VariableSpec, x uint64) error {
	var err error
	switch v.Size() {
	case 1:
		err = v.Set(uint8(x))
	case 2:
		err = v.Set(uint16(x))
	case 4:
		err = v.Set(uint32(x))
	case 8:
		err = v.Set(x)
	default:
		err = fmt.Errorf("a constant of %d bytes", v.Size())
	}
	if err != nil {
		return fmt.Errorf("setting %s: %w", v.Name, err)
	}
	return nil
}

// Reads lists the fields the instrumentation reads for its target, the
// parts left out aside.
func (p *Planned) Reads() []offsets.Field {
	return slices.SortedFunc(maps.Keys(p.reads), func(a, b offsets.Field) int { return strings.Compare(a.String(), b.String()) })
}
