package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/zerotrace/zerotrace/probes/gobin"
)

// AttachUprobe is one probed Go function with its loaded programs: the
// entry program, attached at the function's entry (gobin.EntryOffset), and
// the return program, attached as a uprobe on every RET instruction of the
// function. Uretprobes are never used on Go code: they replace the return
// address on the goroutine stack, and the runtime crashes when it moves
// that stack ("unknown caller pc").
type AttachUprobe struct {
	// Symbol is the function's name in the Go symbol table, such as
	// "net/http.serverHandler.ServeHTTP".
	Symbol string
	Entry  *ebpf.Program // nil when only the returns are probed
	Return *ebpf.Program // nil when only the entry is probed
	// EntryName and ReturnName name the programs as their object does
	// (the kernel and bpftool show the first 15 characters).
	EntryName, ReturnName string
	// At, when not 0, is the file offset of the instruction inside the
	// function that Entry goes on instead of its entry (Uprobe.At).
	At uint64
}

// Attachment is the set of links one instrumentation holds on one process.
type Attachment struct {
	links   []link.Link
	Entries int // entry uprobes attached
	Returns int // uprobes attached at RET instructions
	// Sites are the uprobes attached, one per instruction probed, each
	// with what it costs a hit: emulated or single-stepped.
	Sites []Site
}

// Site is one uprobe attached: on which instruction, and how the kernel
// runs it, which is most of what a hit costs (an emulated jump ~1 µs, a
// single-stepped instruction such as a RET ~10 µs on the project's
// machines).
type Site struct {
	Symbol  string
	Program string
	Return  bool   // at one of the function's RETs, not its entry
	Inside  bool   // on an instruction inside the function (AttachUprobe.At), not its entry
	Offset  uint64 // file offset of the probed instruction
	gobin.Instruction
}

// AttachUprobes attaches every uprobe in ups to t's process only. It attaches
// all or nothing: on any error the links made so far are closed.
//
// Return probes go in before the entry probe, and Close takes them out
// after it. In the windows in between, a return may come without its entry
// (it is counted and ignored) but an entry never lacks its return, which
// would leave state behind in the in-flight table.
func AttachUprobes(t *Target, ups []AttachUprobe) (*Attachment, error) {
	ex, err := link.OpenExecutable(t.ProbePath)
	if err != nil {
		return nil, fmt.Errorf("%s: opening executable: %w", t, err)
	}
	a := &Attachment{}
	for _, u := range ups {
		if err := a.attach(t, ex, u); err != nil {
			_ = a.Close()
			return nil, err
		}
	}
	return a, nil
}

func (a *Attachment) attach(t *Target, ex *link.Executable, u AttachUprobe) error {
	fn, err := t.Bin.Func(u.Symbol)
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	if u.Return != nil {
		rets, err := t.Bin.RetOffsets(fn)
		if err != nil {
			return fmt.Errorf("%s: finding the returns of %s: %w", t, u.Symbol, err)
		}
		for _, off := range rets {
			l, err := ex.Uprobe(u.Symbol, u.Return, &link.UprobeOptions{Address: off, PID: t.PID})
			if err != nil {
				return fmt.Errorf("%s: attaching uprobe to the RET of %s at file offset %#x: %w", t, u.Symbol, off, err)
			}
			a.links = append(a.links, l)
			a.Returns++
			a.site(t, u.Symbol, u.ReturnName, true, off)
		}
	}
	if u.Entry != nil {
		entry := u.At
		if entry == 0 {
			if entry, err = t.Bin.EntryOffset(fn); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
		}
		l, err := ex.Uprobe(u.Symbol, u.Entry, &link.UprobeOptions{Address: entry, PID: t.PID})
		if err != nil {
			return fmt.Errorf("%s: attaching uprobe to %s: %w", t, u.Symbol, err)
		}
		a.links = append(a.links, l)
		a.Entries++
		a.site(t, u.Symbol, u.EntryName, false, entry)
		a.Sites[len(a.Sites)-1].Inside = u.At != 0
	}
	return nil
}

func (a *Attachment) site(t *Target, symbol, prog string, ret bool, off uint64) {
	inst, err := t.Bin.ProbedInstruction(off)
	if err != nil {
		// The probe is in: only its description is missing.
		inst.Text = "unknown instruction"
	}
	a.Sites = append(a.Sites, Site{Symbol: symbol, Program: prog, Return: ret, Offset: off, Instruction: inst})
}

// Close detaches every link, in the reverse order of attaching.
func (a *Attachment) Close() error {
	var errs []error
	for i := len(a.links) - 1; i >= 0; i-- {
		errs = append(errs, a.links[i].Close())
	}
	a.links = nil
	return errors.Join(errs...)
}
