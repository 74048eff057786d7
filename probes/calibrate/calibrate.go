// Package calibrate measures what one bare uprobe hit costs on this machine,
// so that benchmarks can express the agent's overhead in uprobe hits.
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

// target is the probed function. It must not be inlined, so that every
// call executes its first instruction.
//
//go:noinline
func target(x uint64) uint64 { return x*31 + 7 }

// targetSymbol is target's name in this binary's symbol table.
const targetSymbol = "github.com/zerotrace/zerotrace/probes/calibrate.target"

func loop(n int) time.Duration {
	var acc uint64
	start := time.Now()
	for i := range n {
		acc += target(uint64(i))
	}
	d := time.Since(start)
	if acc == 42 {
		fmt.Fprint(os.Stderr, "") // keeps acc alive
	}
	return d
}

// UprobeHit returns the cost of one hit of a uprobe running an empty BPF
// program, measured as the difference per call between calls with and
// without the probe attached, n calls each, on this process.
func UprobeHit(n int) (time.Duration, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.Kprobe, // uprobes use the kprobe program type
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return 0, fmt.Errorf("loading an empty program: %w", err)
	}
	defer prog.Close()

	bin, err := gobin.Open("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	defer bin.Close()
	fn, err := bin.Func(targetSymbol)
	if err != nil {
		return 0, err
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return 0, err
	}

	loop(n / 10) // warm up
	bare := loop(n)
	l, err := ex.Uprobe(targetSymbol, prog, &link.UprobeOptions{Address: fn.Offset, PID: os.Getpid()})
	if err != nil {
		return 0, fmt.Errorf("attaching the calibration uprobe: %w", err)
	}
	probed := loop(n)
	if err := l.Close(); err != nil {
		return 0, err
	}
	return (probed - bare) / time.Duration(n), nil
}
