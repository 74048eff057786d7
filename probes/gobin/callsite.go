package gobin

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// CallResult is where a probe reads what an indirect call inside a
// function returned, without a probe on a RET (single-stepped) or a
// uretprobe (forbidden on Go code): on the first conditional jump after
// the call, which the kernel emulates, while the call's results are still
// in their registers and the function's arguments in their spill slots.
type CallResult struct {
	// Offset is the file offset of the conditional jump.
	Offset uint64
	// Slots are the offsets, from the function's stack pointer, of the
	// spill slots of the argument registers asked for, in the order asked.
	Slots []int64
}

// CallResultSite finds, in f, the first indirect CALL (a call through an
// interface, such as pc.conn.Read(p) in net/http.(*persistConn).Read) and
// the first conditional jump after it with nothing in between that writes
// a register, so that every result register (ResultRegs) still holds what
// the call returned; and, before the call, where f spilled each of args
// while that register still held f's argument (a MOVQ reg, disp(SP) with
// no earlier write to reg). The code is a build's, so it is read per
// binary; the error wraps ErrNoFrame when f's code has another shape.
func (b *Binary) CallResultSite(f Func, args ...x86asm.Reg) (CallResult, error) {
	insts, err := b.decode(f)
	if err != nil {
		return CallResult{}, fmt.Errorf("finding the call site in %s: %w", f.Name, err)
	}
	slots := map[x86asm.Reg]int64{}
	written := map[x86asm.Reg]bool{}
	call := -1
	for i, in := range insts {
		if in.Op == x86asm.CALL {
			if _, ok := in.Args[0].(x86asm.Reg); ok {
				call = i
				break
			}
			if m, ok := in.Args[0].(x86asm.Mem); ok && m.Base != 0 && m.Base != x86asm.RIP {
				call = i
				break
			}
			// A direct call (morestack's is past the body): every
			// register may change.
			for _, r := range ResultRegs {
				written[r] = true
			}
			continue
		}
		if in.Op == x86asm.MOV && in.DataSize == 64 {
			if m, ok := in.Args[0].(x86asm.Mem); ok && m.Base == x86asm.RSP && m.Index == 0 {
				if r, ok := in.Args[1].(x86asm.Reg); ok && !written[r] {
					if _, seen := slots[r]; !seen {
						slots[r] = m.Disp
					}
				}
				continue
			}
		}
		if r, ok := in.Args[0].(x86asm.Reg); ok && writesFirstArg(in.Op) {
			written[fullReg(r)] = true
		}
	}
	if call < 0 {
		return CallResult{}, fmt.Errorf("finding the call site in %s: %w: no indirect call", f.Name, ErrNoFrame)
	}
	out := CallResult{}
	for _, r := range args {
		disp, ok := slots[r]
		if !ok {
			return CallResult{}, fmt.Errorf("finding the call site in %s: %w: %s is not spilled before the call", f.Name, ErrNoFrame, r)
		}
		out.Slots = append(out.Slots, disp)
	}
	for _, in := range insts[call+1:] {
		if isJcc(in.Op) {
			start, err := b.FileOffset(f.Addr)
			if err != nil {
				return CallResult{}, fmt.Errorf("finding the call site in %s: %w", f.Name, err)
			}
			out.Offset = start + uint64(in.pc)
			return out, nil
		}
		// Only compares and tests may come between: they write flags,
		// never a register.
		if in.Op != x86asm.CMP && in.Op != x86asm.TEST {
			break
		}
	}
	return CallResult{}, fmt.Errorf("finding the call site in %s: %w: no conditional jump right after the call", f.Name, ErrNoFrame)
}

// writesFirstArg tells whether an instruction writes its first operand;
// CMP and TEST only read theirs.
func writesFirstArg(op x86asm.Op) bool {
	switch op {
	case x86asm.CMP, x86asm.TEST, x86asm.PUSH, x86asm.NOP:
		return false
	}
	return true
}

// fullReg is the 64-bit register a smaller one is part of.
func fullReg(r x86asm.Reg) x86asm.Reg {
	switch {
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return r - x86asm.EAX + x86asm.RAX
	case r >= x86asm.AX && r <= x86asm.R15W:
		return r - x86asm.AX + x86asm.RAX
	}
	return r
}

// isJcc tells whether op is a conditional jump.
func isJcc(op x86asm.Op) bool {
	switch op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE,
		x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JS:
		return true
	}
	return false
}
