package gobin

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// EntryOffset returns the file offset at which an entry uprobe on f should
// go. That is the conditional jump of f's stack-bound check when f starts
// with one, and f's first instruction otherwise.
//
// Why: the kernel emulates a probed jump in place, but executes most other
// instructions out of line with a single step, which costs a second trap.
// A Go function that can grow its stack starts with
//
//	[LEAQ -framesize(SP), R12]
//	CMPQ SP or R12, 16(R14)   // g.stackguard0
//	JLS  morestack
//
// and none of these touch an argument register, so a probe on the JLS sees
// exactly what one on the first instruction would, at about half the cost.
// After morestack, execution restarts at the first instruction and reaches
// the JLS again, just as it would reach a probe on the first instruction.
func (b *Binary) EntryOffset(f Func) (uint64, error) {
	start, err := b.FileOffset(f.Addr)
	if err != nil {
		return 0, fmt.Errorf("finding the entry of %s: %w", f.Name, err)
	}
	n := min(32, f.End-f.Addr)
	code := make([]byte, n)
	if _, err := b.file.ReadAt(code, int64(start)); err != nil {
		return 0, fmt.Errorf("finding the entry of %s: reading code: %w", f.Name, err)
	}
	if off, ok := stackCheckJump(code); ok {
		return start + off, nil
	}
	return start, nil
}

// stackCheckJump finds the JLS (JBE) of a Go stack-bound check at the start
// of code and returns its offset.
func stackCheckJump(code []byte) (uint64, bool) {
	pc := 0
	next := func() (x86asm.Inst, bool) {
		if pc >= len(code) {
			return x86asm.Inst{}, false
		}
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil || inst.Op == 0 || inst.Len <= 0 {
			return x86asm.Inst{}, false
		}
		return inst, true
	}
	inst, ok := next()
	if !ok {
		return 0, false
	}
	bound := x86asm.RSP
	if inst.Op == x86asm.LEA && inst.Args[0] == x86asm.R12 {
		m, isMem := inst.Args[1].(x86asm.Mem)
		if !isMem || m.Base != x86asm.RSP {
			return 0, false
		}
		bound = x86asm.R12
		pc += inst.Len
		if inst, ok = next(); !ok {
			return 0, false
		}
	}
	if inst.Op != x86asm.CMP || inst.Args[0] != bound {
		return 0, false
	}
	m, isMem := inst.Args[1].(x86asm.Mem)
	if !isMem || m.Base != x86asm.R14 || m.Index != 0 {
		return 0, false
	}
	pc += inst.Len
	if inst, ok = next(); !ok || inst.Op != x86asm.JBE {
		return 0, false
	}
	return uint64(pc), true
}
