package gobin

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// ErrNoFrame is wrapped by ResultSlots and ClosureSlot when a function's
// code does not show what a probe needs to read from its frame: the
// probe must then do without (or fall back to the function's RETs).
var ErrNoFrame = errors.New("frame layout not recognised")

// ResultRegs are the registers that carry a Go function's results, in order
// (the register ABI on amd64; integer and pointer words only).
var ResultRegs = []x86asm.Reg{x86asm.RAX, x86asm.RBX, x86asm.RCX, x86asm.RDI, x86asm.RSI, x86asm.R8, x86asm.R9, x86asm.R10, x86asm.R11}

// ResultSlots finds where f keeps its first n result words while its
// deferred calls run, as offsets from f's stack pointer: ResultSlots(f,
// 2)[1] is the slot f reloads into RBX before it returns.
//
// Why: a function with open-coded defers stores its results in stack slots,
// calls each deferred function at every return, and reloads the results
// into registers just before its epilogue:
//
//	CALL  CX                  // a deferred call (or runtime.deferreturn)
//	MOVQ  0x80(SP), AX        // results, in any order
//	MOVQ  0xe8(SP), BX
//	MOVQ  0xf0(SP), CX
//	ADDQ  $0x1d0, SP
//	POPQ  BP
//	RET
//
// A probe on the entry of the deferred function (an emulated instruction)
// then sees the results without a probe on a RET (single-stepped). The
// slots depend on how the compiler laid out that build's frame, so they are
// read from the code: every return of that shape must agree. The error
// wraps ErrNoFrame when none has that shape or two disagree.
func (b *Binary) ResultSlots(f Func, n int) ([]int64, error) {
	if n < 1 || n > len(ResultRegs) {
		return nil, fmt.Errorf("finding the result slots of %s: %d results asked for", f.Name, n)
	}
	insts, err := b.decode(f)
	if err != nil {
		return nil, fmt.Errorf("finding the result slots of %s: %w", f.Name, err)
	}
	var slots []int64
	sites := 0
	for i, in := range insts {
		if in.Op != x86asm.RET {
			continue
		}
		got, ok := reloadedResults(insts[:i], n)
		if !ok {
			continue // an early return, before anything was deferred
		}
		sites++
		if slots == nil {
			slots = got
			continue
		}
		for k := range slots {
			if slots[k] != got[k] {
				return nil, fmt.Errorf("finding the result slots of %s: %w: returns reload %s from %#x and %#x", f.Name, ErrNoFrame, ResultRegs[k], slots[k], got[k])
			}
		}
	}
	if sites == 0 {
		return nil, fmt.Errorf("finding the result slots of %s: %w: no return reloads %d results after a deferred call", f.Name, ErrNoFrame, n)
	}
	return slots, nil
}

// reloadedResults reads, backwards from a RET at the end of before, the
// epilogue and the result reloads that follow a call; ok is false when the
// return has another shape or does not reload the first n result registers.
func reloadedResults(before []decoded, n int) ([]int64, bool) {
	i := len(before) - 1
	// POPQ BP; ADDQ $frame, SP
	if i < 1 || before[i].Op != x86asm.POP || before[i].Args[0] != x86asm.RBP {
		return nil, false
	}
	i--
	if before[i].Op != x86asm.ADD || before[i].Args[0] != x86asm.RSP {
		return nil, false
	}
	i--
	loaded := map[x86asm.Reg]int64{}
	for ; i >= 0; i-- {
		reg, disp, ok := spLoad(before[i].Inst)
		if !ok {
			break
		}
		if _, seen := loaded[reg]; !seen {
			loaded[reg] = disp // the last load of the register wins
		}
	}
	if i < 0 || before[i].Op != x86asm.CALL {
		return nil, false
	}
	out := make([]int64, n)
	for k := range out {
		disp, ok := loaded[ResultRegs[k]]
		if !ok {
			return nil, false
		}
		out[k] = disp
	}
	return out, true
}

// spLoad matches MOVQ disp(SP), reg.
func spLoad(in x86asm.Inst) (x86asm.Reg, int64, bool) {
	if in.Op != x86asm.MOV || in.DataSize != 64 {
		return 0, 0, false
	}
	reg, ok := in.Args[0].(x86asm.Reg)
	if !ok || reg < x86asm.RAX || reg > x86asm.R15 {
		return 0, 0, false
	}
	m, ok := in.Args[1].(x86asm.Mem)
	if !ok || m.Base != x86asm.RSP || m.Index != 0 || m.Segment != 0 {
		return 0, 0, false
	}
	return reg, m.Disp, true
}

// ClosureSlot finds, in the closure of deferred that f builds on its stack
// for a defer, the offset of the pointer to f's stack slot at slot (an
// offset from f's stack pointer, as ResultSlots gives): how a deferred
// closure that captures a named result, such as err, reaches it.
//
// f builds such a closure by storing deferred's address and then each
// captured variable's address next to it:
//
//	LEAQ  deferred(SB), DX
//	MOVQ  DX, 0x170(SP)       // the closure: its function...
//	LEAQ  0xe8(SP), DX
//	MOVQ  DX, 0x178(SP)       // ...and &err at +8
//
// The error wraps ErrNoFrame when f builds no closure of deferred that
// holds the slot's address.
func (b *Binary) ClosureSlot(f, deferred Func, slot int64) (int64, error) {
	insts, err := b.decode(f)
	if err != nil {
		return 0, fmt.Errorf("finding the closure of %s: %w", deferred.Name, err)
	}
	found := int64(-1)
	for i, in := range insts {
		if in.Op != x86asm.LEA || ripTarget(f, in) != deferred.Addr {
			continue
		}
		// The closure's first word: the next store of that register.
		reg, _ := in.Args[0].(x86asm.Reg)
		base, j, ok := int64(0), i+1, false
		for ; j < len(insts) && j < i+4; j++ {
			if r, disp, isStore := spStore(insts[j].Inst); isStore && r == reg {
				base, ok = disp, true
				break
			}
		}
		if !ok {
			continue
		}
		// Then a LEAQ slot(SP), R stored into the closure.
		for k := j + 1; k+1 < len(insts) && k < j+24; k++ {
			m, isMem := insts[k].Args[1].(x86asm.Mem)
			if insts[k].Op != x86asm.LEA || !isMem || m.Base != x86asm.RSP || m.Index != 0 || m.Disp != slot {
				continue
			}
			r, disp, isStore := spStore(insts[k+1].Inst)
			if !isStore || r != insts[k].Args[0] || disp <= base {
				continue
			}
			if found >= 0 && found != disp-base {
				return 0, fmt.Errorf("finding the closure of %s in %s: %w: it holds slot %#x at +%#x and +%#x", deferred.Name, f.Name, ErrNoFrame, slot, found, disp-base)
			}
			found = disp - base
			break
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("finding the closure of %s in %s: %w: no closure holding the address of slot %#x", deferred.Name, f.Name, ErrNoFrame, slot)
	}
	return found, nil
}

// spStore matches MOVQ reg, disp(SP).
func spStore(in x86asm.Inst) (x86asm.Reg, int64, bool) {
	if in.Op != x86asm.MOV || in.DataSize != 64 {
		return 0, 0, false
	}
	m, ok := in.Args[0].(x86asm.Mem)
	if !ok || m.Base != x86asm.RSP || m.Index != 0 || m.Segment != 0 {
		return 0, 0, false
	}
	reg, ok := in.Args[1].(x86asm.Reg)
	if !ok {
		return 0, 0, false
	}
	return reg, m.Disp, true
}

// ripTarget is the address a RIP-relative operand of in points at, 0 when
// it has none.
func ripTarget(f Func, in decoded) uint64 {
	for _, a := range in.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			return uint64(int64(f.Addr) + int64(in.pc) + int64(in.Len) + m.Disp)
		}
	}
	return 0
}

// decoded is one instruction of a function and its offset in it.
type decoded struct {
	x86asm.Inst
	pc int
}

// decode reads and decodes all of f's code, as RetOffsets does.
func (b *Binary) decode(f Func) ([]decoded, error) {
	code, err := b.code(f)
	if err != nil {
		return nil, err
	}
	var out []decoded
	for pc := 0; pc < len(code); {
		in, err := decodeAt(code, pc)
		if err != nil {
			return nil, err
		}
		out = append(out, decoded{in, pc})
		pc += in.Len
	}
	return out, nil
}
