// Package calibrate measures what one bare uprobe hit costs on this machine,
// so that benchmarks can express the agent's overhead in uprobe hits, and
// provides the floor of syscall-level capture (an empty program on the raw
// syscall tracepoints) that benchmarks compare the agent's tax with.
package calibrate

import (
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/zerotrace/zerotrace/probes/gobin"
)

// leaf must not be inlined, so that every call executes its first
// instruction. It is a leaf: no stack check, so its first instruction is an
// ordinary one, which the kernel single-steps out of line.
//
//go:noinline
func leaf(x uint64) uint64 { return x*31 + 7 }

// framed calls leaf, so it starts with a stack-bound check whose jump the
// kernel emulates in place (see gobin.EntryOffset).
//
//go:noinline
func framed(x uint64) uint64 { return leaf(x) + 1 }

const framedSymbol = "github.com/zerotrace/zerotrace/probes/calibrate.framed"

func loop(n int) time.Duration {
	var acc uint64
	start := time.Now()
	for i := range n {
		acc += framed(uint64(i))
	}
	d := time.Since(start)
	if acc == 42 {
		fmt.Fprint(os.Stderr, "") // keeps acc alive
	}
	return d
}

// Costs are the measured costs of one uprobe hit running an empty program.
type Costs struct {
	// SingleStep is a probe on an instruction executed out of line, such
	// as a function's first instruction or a RET.
	SingleStep time.Duration
	// Emulated is a probe on a jump the kernel emulates, where zerotrace
	// puts its entry probes.
	Emulated time.Duration
	// Return is a probe on a RET instruction, where zerotrace puts its
	// return probes.
	Return time.Duration
}

// UprobeHit measures, on this process, the extra time per call of a
// function with an empty uprobe program attached at its first instruction
// and at its stack-check jump, n calls each.
func UprobeHit(n int) (Costs, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.Kprobe, // uprobes use the kprobe program type
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return Costs{}, fmt.Errorf("loading an empty program: %w", err)
	}
	defer prog.Close()

	bin, err := gobin.Open("/proc/self/exe")
	if err != nil {
		return Costs{}, err
	}
	defer bin.Close()
	fn, err := bin.Func(framedSymbol)
	if err != nil {
		return Costs{}, err
	}
	jump, err := bin.EntryOffset(fn)
	if err != nil {
		return Costs{}, err
	}
	if jump == fn.Offset {
		return Costs{}, fmt.Errorf("calibration function %s has no stack-check jump", framedSymbol)
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return Costs{}, err
	}
	probed := func(off uint64) (time.Duration, error) {
		l, err := ex.Uprobe(framedSymbol, prog, &link.UprobeOptions{Address: off, PID: os.Getpid()})
		if err != nil {
			return 0, fmt.Errorf("attaching the calibration uprobe: %w", err)
		}
		defer l.Close()
		return loop(n), nil
	}

	loop(n / 10) // warm up
	bare := loop(n)
	first, err := probed(fn.Offset)
	if err != nil {
		return Costs{}, err
	}
	atJump, err := probed(jump)
	if err != nil {
		return Costs{}, err
	}
	rets, err := bin.RetOffsets(fn)
	if err != nil {
		return Costs{}, err
	}
	if len(rets) != 1 {
		return Costs{}, fmt.Errorf("calibration function %s has %d RETs, want 1", framedSymbol, len(rets))
	}
	atRet, err := probed(rets[0])
	if err != nil {
		return Costs{}, err
	}
	return Costs{
		SingleStep: (first - bare) / time.Duration(n),
		Emulated:   (atJump - bare) / time.Duration(n),
		Return:     (atRet - bare) / time.Duration(n),
	}, nil
}
