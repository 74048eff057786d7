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

// Instruction is the instruction a uprobe replaces, and how the kernel
// runs it when the probe fires.
type Instruction struct {
	// Text is the instruction's mnemonic ("JBE", "RET").
	Text string
	// Emulated: the kernel carries the instruction out itself (a relative
	// jump or call, on every x86 kernel). Otherwise it copies it out of
	// line and single-steps it: a second trap per hit, ten times the cost
	// here. The newest kernels also emulate pushes and NOPs, which no
	// probe of zerotrace's is placed on; they count as single-stepped.
	Emulated bool
}

// ProbedInstruction decodes the instruction at file offset off, where a
// uprobe goes, and says how the kernel will run it.
func (b *Binary) ProbedInstruction(off uint64) (Instruction, error) {
	code := make([]byte, 16)
	n, err := b.file.ReadAt(code, int64(off))
	if n == 0 {
		return Instruction{}, fmt.Errorf("reading the instruction at file offset %#x: %w", off, err)
	}
	inst, err := x86asm.Decode(code[:n], 64)
	if err != nil {
		return Instruction{}, fmt.Errorf("decoding the instruction at file offset %#x: %w", off, err)
	}
	return Instruction{Text: inst.Op.String(), Emulated: emulated(inst)}, nil
}

// emulated: a jump or call to a relative address, which arch/x86's uprobes
// emulate (branch_setup_xol_ops) on every kernel the project supports.
func emulated(inst x86asm.Inst) bool {
	if _, rel := inst.Args[0].(x86asm.Rel); !rel {
		return false
	}
	switch inst.Op {
	case x86asm.CALL, x86asm.JMP,
		x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE, x86asm.JL,
		x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JS:
		return true
	}
	return false
}
