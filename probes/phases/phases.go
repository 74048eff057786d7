// Package phases makes functions the configuration names into INTERNAL
// spans of the traced Go process: one span per call, child of the span
// active on its goroutine (a request being served, an enclosing phase),
// parent of the calls made inside it (HTTP client, database/sql, other
// phases), on its goroutine and on goroutines it starts.
//
// A call starts at its function's entry (the stack-check jump, which the
// kernel emulates) and ends at one of its RET instructions, each of which
// the kernel single-steps (about ten times the cost of an entry): a function
// of the program's own has no other place that surely runs once it is done,
// and a uretprobe would crash the Go program. See bpf/phases/probe.c.
//
// A function is refused, with the reason, when the binary does not have it,
// when the compiler inlined every call to it (it has no code of its own to
// probe), or when none of its RETs can be found; a refusal disables that
// phase only.
package phases

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Generic is what a pattern writes for the type arguments of a generic
// function or type: "main.Map[...]" names every instantiation of main.Map.
const Generic = "[...]"

// Function is one function found for a pattern.
type Function struct {
	// Pattern is the configuration's name for it.
	Pattern string
	// Symbol is its name in the binary, such as "main.Map[go.shape.int]".
	Symbol string
	// ID is its number in the records (the same for the same pattern and
	// symbol in every process).
	ID  uint32
	fn  gobin.Func
	ret []uint64 // file offsets of its RETs
	at  uint64   // file offset of its entry probe
}

// Refusal is a pattern that cannot be traced, and why.
type Refusal struct {
	Pattern string
	Why     string
}

func (r Refusal) String() string { return "phase " + r.Pattern + " refused: " + r.Why }

// Resolve finds, in bin, the functions each pattern names, with the
// places to probe; a pattern that names none that can be probed is
// refused.
func Resolve(bin *gobin.Binary, patterns []string) ([]Function, []Refusal) {
	var found []Function
	var refused []Refusal
	bySym := map[string][]string{}
	var all []string
	patterns = slices.Compact(slices.Clone(patterns))
	for _, p := range patterns {
		if _, dup := bySym[p]; dup {
			continue
		}
		syms, why := symbols(bin, p)
		if why != "" {
			refused = append(refused, Refusal{Pattern: p, Why: why})
			continue
		}
		bySym[p] = syms
		all = append(all, syms...)
	}
	// A function with code of its own may still be inlined at some of its
	// calls: those would have no span, and the calls made inside them the
	// wrong parent. DWARF tells (a binary without it cannot).
	inlined, _ := bin.InlinedCalls(all)
	for _, p := range patterns {
		syms, ok := bySym[p]
		if !ok {
			continue
		}
		delete(bySym, p) // once, however often the configuration names it
		var whys []string
		n := 0
		for _, sym := range syms {
			if k := inlined[sym]; k > 0 {
				whys = append(whys, fmt.Sprintf("%s: the compiler inlined %d of its calls, which would have no span "+
					"(mark it //go:noinline)", sym, k))
				continue
			}
			f, err := probeable(bin, p, sym)
			if err != nil {
				whys = append(whys, err.Error())
				continue
			}
			found = append(found, f)
			n++
		}
		if n == 0 {
			refused = append(refused, Refusal{Pattern: p, Why: strings.Join(whys, "; ")})
		}
	}
	return found, refused
}

// symbols lists the functions of bin that pattern names, or says why none.
func symbols(bin *gobin.Binary, pattern string) ([]string, string) {
	if !strings.Contains(pattern, Generic) {
		if _, err := bin.Func(pattern); err == nil {
			return []string{pattern}, ""
		} else if !errors.Is(err, gobin.ErrNoFunc) {
			return nil, err.Error()
		}
		if inl, _ := bin.InlinedOnly(pattern); inl {
			return nil, "the compiler inlined every call to it, so it has no code of its own to probe " +
				"(mark it //go:noinline, or name the function it is inlined into)"
		}
		var generic bool
		_ = bin.FuncNames(func(name string) { generic = generic || MatchGeneric(pattern+Generic, name) })
		if generic {
			return nil, "it is generic: name its instantiations as " + pattern + Generic
		}
		return nil, "the binary has no such function (the linker drops functions the program never calls; " +
			"names are package path and function, such as main.buildPrompt or github.com/acme/rag.(*Store).Search)"
	}
	var all, shapes []string
	if err := bin.FuncNames(func(name string) {
		if MatchGeneric(pattern, name) {
			all = append(all, name)
			if strings.Contains(name, "go.shape.") {
				shapes = append(shapes, name)
			}
		}
	}); err != nil {
		return nil, err.Error()
	}
	// The shape-instantiated bodies do the work; the other instantiations
	// are wrappers that call them (method values, interfaces), and probing
	// both would make two spans of one call.
	if len(shapes) > 0 {
		all = shapes
	}
	if len(all) == 0 {
		return nil, "the binary has no instantiation of it (the linker drops what the program never calls, " +
			"and a function the compiler inlined everywhere has no code of its own)"
	}
	slices.Sort(all)
	return all, ""
}

// MatchGeneric tells whether the function name is an instantiation that
// pattern names: each "[...]" of the pattern stands for one bracketed list
// of type arguments, however nested ("main.Map[go.shape.[]int]",
// "main.(*List[go.shape.string]).Push").
func MatchGeneric(pattern, name string) bool {
	for {
		i := strings.Index(pattern, Generic)
		if i < 0 {
			return pattern == name
		}
		if !strings.HasPrefix(name, pattern[:i]) {
			return false
		}
		name = name[i:]
		if !strings.HasPrefix(name, "[") {
			return false
		}
		depth, j := 0, 0
		for ; j < len(name); j++ {
			switch name[j] {
			case '[':
				depth++
			case ']':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if depth != 0 {
			return false
		}
		pattern, name = pattern[i+len(Generic):], name[j+1:]
	}
}

// probeable finds where to probe sym.
func probeable(bin *gobin.Binary, pattern, sym string) (Function, error) {
	fn, err := bin.Func(sym)
	if err != nil {
		return Function{}, fmt.Errorf("%s: %w", sym, err)
	}
	rets, err := bin.RetOffsets(fn)
	if err != nil {
		return Function{}, fmt.Errorf("%s: no RET instruction to end its span on (%w)", sym, err)
	}
	at, err := bin.EntryOffset(fn)
	if err != nil {
		return Function{}, fmt.Errorf("%s: %w", sym, err)
	}
	return Function{Pattern: pattern, Symbol: sym, ID: ids.of(pattern, sym), fn: fn, ret: rets, at: at}, nil
}

// ids numbers the (pattern, symbol) pairs for every process alike, so that
// the decoder needs no process to name a record's function.
var ids = &table{byKey: map[[2]string]uint32{}}

type table struct {
	mu    sync.RWMutex
	byKey map[[2]string]uint32
	names [][2]string
}

func (t *table) of(pattern, sym string) uint32 {
	k := [2]string{pattern, sym}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.byKey[k]; ok {
		return id
	}
	id := uint32(len(t.names))
	t.byKey[k] = id
	t.names = append(t.names, k)
	return id
}

func (t *table) name(id uint32) (pattern, sym string, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if int(id) >= len(t.names) {
		return "", "", false
	}
	return t.names[id][0], t.names[id][1], true
}

// ShortName is a span's name for a pattern: without the directories of
// its import path ("github.com/acme/rag.(*Store).Search" is
// "rag.(*Store).Search").
func ShortName(pattern string) string {
	// The import path ends at the first dot after its last slash; a slash
	// after that is inside the type arguments.
	end := strings.Index(pattern, "[")
	if end < 0 {
		end = len(pattern)
	}
	return pattern[strings.LastIndex(pattern[:end], "/")+1:]
}

// GoroutineExit is where every goroutine ends (runtime.Goexit, a
// function's return at the bottom of its goroutine): whatever phase is
// still open on it then will never return.
const GoroutineExit = "runtime.goexit1"

// Attached is the phases of one process, attached.
type Attached struct {
	// Functions are those traced; Refused those that cannot be.
	Functions []Function
	Refused   []Refusal
	// Sites are the uprobes attached, each with its cost.
	Sites   []probes.Site
	coll    *ebpf.Collection
	links   []*probes.Attachment
	counter *ebpf.Map
}

// RequestEnds are the functions that end a request on the goroutine that
// served it (the net/http server's ends, registry.RequestEnds): a phase
// still open on that goroutine then will never return (a panic net/http
// recovered from), and ends there too, as at GoroutineExit.
type RequestEnds struct {
	Symbols []string
	// NotFrom is a function that calls one of them in the middle of a
	// request (net/http's hijackLocked calls abortPendingRead): a call
	// from it ends nothing.
	NotFrom string
}

// Attach loads the phase programs for t and attaches them to the
// functions the patterns name, and to the ends of requests. A pattern that cannot be traced is refused
// (Attached.Refused) and the others are attached; the error is for what
// stops them all.
func Attach(t *probes.Target, shared *events.Shared, patterns []string, ends RequestEnds) (*Attached, error) {
	found, refused := Resolve(t.Bin, patterns)
	a := &Attached{Refused: refused}
	if len(found) == 0 {
		return a, nil
	}
	set, err := offsets.ResolveAll(t.Bin, []offsets.Field{offsets.GoroutineID, offsets.GoroutineParentID})
	if err != nil {
		return nil, fmt.Errorf("%s: phases: %w", t, err)
	}
	goid, ok1 := set.Get(offsets.GoroutineID)
	pgoid, ok2 := set.Get(offsets.GoroutineParentID)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s: phases: no offset of runtime.g.goid or parentGoid", t)
	}
	spec, err := Spec(shared, goid, pgoid)
	if err != nil {
		return nil, err
	}
	if fn, err := t.Bin.Func(ends.NotFrom); err == nil {
		for name, v := range map[string]uint64{"not_from_start": t.RuntimeAddr(fn.Addr), "not_from_end": t.RuntimeAddr(fn.End)} {
			if err := spec.Variables[name].Set(v); err != nil {
				return nil, fmt.Errorf("phases: setting %s: %w", name, err)
			}
		}
	}
	replace := shared.Replacements()
	for name := range replace {
		if _, ok := spec.Maps[name]; !ok {
			delete(replace, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, *shared.Options(replace))
	if err != nil {
		return nil, fmt.Errorf("%s: loading the phase programs: %w", t, err)
	}
	a.coll, a.counter = coll, coll.Maps["phase_counters"]
	totals.Lock()
	totals.live[a] = true
	totals.Unlock()
	sites := coll.Maps["phase_sites"]
	enter, ret, end := coll.Programs["phase_enter"], coll.Programs["phase_return"], coll.Programs["phase_goroutine_end"]

	// The goroutine ends first, then each function, RETs before its entry
	// (probes.AttachUprobes): a phase may end without having started,
	// never start without its ends in place.
	var endProbes []probes.AttachUprobe
	for _, sym := range append(slices.Clone(ends.Symbols), GoroutineExit) {
		if _, err := t.Bin.Func(sym); err == nil {
			endProbes = append(endProbes, probes.AttachUprobe{Symbol: sym, Entry: end, EntryName: "phase_goroutine_end"})
		}
	}
	att, err := probes.AttachUprobes(t, endProbes)
	if err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("phases: %w", err)
	}
	a.add(att)
	for _, f := range found {
		if err := fill(t, sites, f); err != nil {
			a.Refused = append(a.Refused, Refusal{Pattern: f.Pattern, Why: f.Symbol + ": " + err.Error()})
			continue
		}
		att, err := probes.AttachUprobes(t, []probes.AttachUprobe{{Symbol: f.Symbol, Entry: enter, Return: ret,
			EntryName: "phase_enter", ReturnName: "phase_return"}})
		if err != nil {
			a.Refused = append(a.Refused, Refusal{Pattern: f.Pattern, Why: err.Error()})
			continue
		}
		a.add(att)
		a.Functions = append(a.Functions, f)
	}
	return a, nil
}

// Spec returns the phase programs and maps with their constants set: the
// offsets of runtime.g's goid and parentGoid in the traced binary, and the
// shared maps' (events.Shared), ready to load with shared.Replacements().
func Spec(shared *events.Shared, goid, parentGoid uint64) (*ebpf.CollectionSpec, error) {
	spec, err := loadPhases()
	if err != nil {
		return nil, fmt.Errorf("phases: %w", err)
	}
	for name, v := range map[string]uint64{"off_g_goid": goid, "off_g_parent_goid": parentGoid} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("phases: setting %s: %w", name, err)
		}
	}
	if err := shared.SetConstants(spec); err != nil {
		return nil, fmt.Errorf("phases: %w", err)
	}
	return spec, nil
}

// fill tells the programs the phase number of f's probed instructions,
// by their run-time address.
func fill(t *probes.Target, sites *ebpf.Map, f Function) error {
	for _, off := range append([]uint64{f.at}, f.ret...) {
		addr := t.RuntimeAddr(f.fn.Addr + (off - f.fn.Offset))
		if err := sites.Put(addr, f.ID); err != nil {
			return fmt.Errorf("phase_sites: %w", err)
		}
	}
	return nil
}

func (a *Attached) add(att *probes.Attachment) {
	a.links = append(a.links, att)
	a.Sites = append(a.Sites, att.Sites...)
}

// Summary says, in one line, what is traced.
func (a *Attached) Summary() string {
	entries, rets := 0, 0
	for _, s := range a.Sites {
		switch {
		case s.Return:
			rets++
		case s.Program == "phase_enter":
			entries++
		}
	}
	var names []string
	for _, f := range a.Functions {
		names = append(names, f.Symbol)
	}
	return fmt.Sprintf("phases (%d entry + %d RET uprobes, the RETs single-stepped): %s", entries, rets, strings.Join(names, ", "))
}

// totals keeps the counts of every process's phases: those of processes
// still attached are read when asked, the others were added at Close.
var totals = struct {
	sync.Mutex
	live             map[*Attached]bool
	overflow, missed uint64
}{live: map[*Attached]bool{}}

// Lost counts, over every process attached since the agent started, the
// calls of phases not traced because PHASE_MAX_DEPTH (16) phases were
// already open on their goroutine (a loss), and the RETs that found no
// open phase (calls that began before the probes were in: by design).
func Lost() (overflow, noEntry uint64) {
	totals.Lock()
	defer totals.Unlock()
	overflow, noEntry = totals.overflow, totals.missed
	for a := range totals.live {
		if o, n, err := a.lost(); err == nil {
			overflow, noEntry = overflow+o, noEntry+n
		}
	}
	return overflow, noEntry
}

func (a *Attached) lost() (overflow, noEntry uint64, err error) {
	if a.counter == nil {
		return 0, 0, nil
	}
	sum := func(k uint32) (uint64, error) {
		var per []uint64
		if err := a.counter.Lookup(k, &per); err != nil {
			return 0, err
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n, nil
	}
	if overflow, err = sum(uint32(phasesPhaseCounterPHASE_COUNTER_OVERFLOW)); err != nil {
		return 0, 0, err
	}
	noEntry, err = sum(uint32(phasesPhaseCounterPHASE_COUNTER_NO_ENTRY))
	return overflow, noEntry, err
}

// Close detaches every uprobe, then unloads the programs.
func (a *Attached) Close() error {
	var errs []error
	for i := len(a.links) - 1; i >= 0; i-- {
		errs = append(errs, a.links[i].Close())
	}
	a.links = nil
	totals.Lock()
	if totals.live[a] {
		delete(totals.live, a)
		if o, n, err := a.lost(); err == nil {
			totals.overflow += o
			totals.missed += n
		}
	}
	totals.Unlock()
	if a.coll != nil {
		a.coll.Close()
		a.coll = nil
	}
	return errors.Join(errs...)
}
