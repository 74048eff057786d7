package gobin

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// CopySite is where a method hands bytes it holds to its caller through an
// inlined copy from a reader field of its receiver (the bytes.Reader.Read
// that crypto/tls.(*Conn).Read inlines: n = copy(b, c.input.s[c.input.i:])
// then c.input.i += n): the CALL runtime.memmove of that copy, which the
// kernel emulates. At the CALL, BX is the source (the bytes handed over,
// still where the receiver keeps them), CX their count and AX the
// caller's buffer, not written yet; the receiver is in its spill slot.
type CopySite struct {
	// Offset is the file offset of the CALL.
	Offset uint64
	// ReceiverSlot is the offset, from the function's stack pointer, of
	// the slot the prologue spills the receiver (AX) to.
	ReceiverSlot int64
	// IndexField is the offset in the receiver of the read index the
	// count is added to after the copy (c.input.i).
	IndexField int64
}

// CopySite finds in f its one call of runtime.memmove followed by the
// receiver's reload from its spill slot and the addition of the count
// (CX) to a field of it. The code is a build's, so it is read per binary;
// the error wraps ErrNoFrame when f's code has another shape (no such
// call, or more than one).
func (b *Binary) CopySite(f Func) (CopySite, error) {
	fail := func(err error) (CopySite, error) {
		return CopySite{}, fmt.Errorf("finding the copy site in %s: %w", f.Name, err)
	}
	memmove, err := b.Func("runtime.memmove")
	if err != nil {
		return fail(err)
	}
	insts, err := b.decode(f)
	if err != nil {
		return fail(err)
	}
	// The receiver's spill: the first MOVQ AX, disp(SP) before any call
	// or write to AX.
	slot, spilled := int64(0), false
	for _, in := range insts {
		if r, disp, ok := spStore(in.Inst); ok && r == x86asm.RAX {
			slot, spilled = disp, true
			break
		}
		if in.Op == x86asm.CALL {
			break
		}
		if r, ok := in.Args[0].(x86asm.Reg); ok && writesReg(in.Op) && wideReg(r) == x86asm.RAX {
			break
		}
	}
	if !spilled {
		return fail(fmt.Errorf("%w: the receiver is not spilled", ErrNoFrame))
	}
	var site CopySite
	found := 0
	for i, in := range insts {
		if in.Op != x86asm.CALL {
			continue
		}
		rel, ok := in.Args[0].(x86asm.Rel)
		if !ok || uint64(int64(f.Addr)+int64(in.pc)+int64(in.Len)+int64(rel)) != memmove.Addr {
			continue
		}
		field, ok := advancesReceiver(insts[i+1:], slot)
		if !ok {
			continue
		}
		start, err := b.FileOffset(f.Addr)
		if err != nil {
			return fail(err)
		}
		site = CopySite{Offset: start + uint64(in.pc), ReceiverSlot: slot, IndexField: field}
		found++
	}
	switch found {
	case 0:
		return fail(fmt.Errorf("%w: no copy into the caller's buffer", ErrNoFrame))
	case 1:
		return site, nil
	}
	return fail(fmt.Errorf("%w: %d copies into the caller's buffer", ErrNoFrame, found))
}

// advancesReceiver says whether the instructions after a copy's CALL
// reload the receiver from slot and add CX (the count, reloaded from
// where it was kept across the call) to one of its fields, within the
// few instructions bytes.Reader.Read's r.i += n takes; it returns that
// field's offset.
func advancesReceiver(after []decoded, slot int64) (int64, bool) {
	recv := x86asm.Reg(0)
	for _, in := range after[:min(len(after), 6)] {
		if r, disp, ok := spLoad(in.Inst); ok && disp == slot {
			recv = r
			continue
		}
		if in.Op != x86asm.ADD || recv == 0 {
			continue
		}
		m, ok := in.Args[0].(x86asm.Mem)
		if !ok || m.Base != recv || m.Index != 0 {
			continue
		}
		if r, ok := in.Args[1].(x86asm.Reg); ok && r == x86asm.RCX {
			return m.Disp, true
		}
	}
	return 0, false
}

// writesReg tells whether an instruction writes its first operand.
func writesReg(op x86asm.Op) bool {
	switch op {
	case x86asm.CMP, x86asm.TEST, x86asm.PUSH, x86asm.NOP:
		return false
	}
	return true
}

// wideReg is the 64-bit register a 32- or 16-bit one is part of.
func wideReg(r x86asm.Reg) x86asm.Reg {
	switch {
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return r - x86asm.EAX + x86asm.RAX
	case r >= x86asm.AX && r <= x86asm.R15W:
		return r - x86asm.AX + x86asm.RAX
	}
	return r
}
