package gobin

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// RetOffsets returns the file offset of every RET instruction in f, in
// address order. Return probes are attached there because uretprobes rewrite
// the return address on the stack, which the Go runtime detects and aborts on
// when it copies or unwinds a goroutine stack.
//
// The code is decoded linearly from f.Addr to f.End: Go does not mix data
// into amd64 text, so a linear sweep sees every instruction, and the padding
// up to the next function is INT3. Any byte sequence that does not decode is
// an error rather than something to skip, because a probe placed on a byte
// that is not an instruction boundary corrupts the traced program. A function
// without RET (one that only tail-calls or panics) is an error wrapping
// ErrNoRet.
func (b *Binary) RetOffsets(f Func) ([]uint64, error) {
	code, err := b.code(f)
	if err != nil {
		return nil, fmt.Errorf("finding RETs of %s: %w", f.Name, err)
	}
	rets, err := findRets(code)
	if err != nil {
		return nil, fmt.Errorf("finding RETs of %s: %w", f.Name, err)
	}
	if len(rets) == 0 {
		return nil, fmt.Errorf("finding RETs of %s: %w in %#x-%#x", f.Name, ErrNoRet, f.Addr, f.End)
	}
	start, err := b.FileOffset(f.Addr)
	if err != nil {
		return nil, fmt.Errorf("finding RETs of %s: %w", f.Name, err)
	}
	for i := range rets {
		rets[i] += start
	}
	return rets, nil
}

// code reads f's machine code from the file.
func (b *Binary) code(f Func) ([]byte, error) {
	if f.End <= f.Addr {
		return nil, fmt.Errorf("empty address range %#x-%#x", f.Addr, f.End)
	}
	start, err := b.FileOffset(f.Addr)
	if err != nil {
		return nil, err
	}
	// The whole range must be file-backed and contiguous in the file, which
	// holds when its last byte maps to the matching offset of one segment.
	last, err := b.FileOffset(f.End - 1)
	if err != nil || last-start != f.End-1-f.Addr {
		return nil, fmt.Errorf("code %#x-%#x is not contiguous in the file", f.Addr, f.End)
	}
	code := make([]byte, f.End-f.Addr)
	if _, err := b.file.ReadAt(code, int64(start)); err != nil {
		return nil, fmt.Errorf("reading code: %w", err)
	}
	return code, nil
}

// findRets returns the offsets within code of its RET instructions.
func findRets(code []byte) ([]uint64, error) {
	var rets []uint64
	for pc := 0; pc < len(code); {
		inst, err := decodeAt(code, pc)
		if err != nil {
			return nil, err
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, uint64(pc))
		}
		pc += inst.Len
	}
	return rets, nil
}

// decodeAt decodes the instruction at code[pc:].
func decodeAt(code []byte, pc int) (x86asm.Inst, error) {
	inst, err := x86asm.Decode(code[pc:], 64)
	if err != nil {
		return x86asm.Inst{}, fmt.Errorf("decoding instruction at +%#x (% x): %w", pc, code[pc:min(pc+8, len(code))], err)
	}
	// x86asm reports some encodings it does not know, such as ENDBR64
	// or a lone prefix, as a prefix-only instruction without an
	// opcode and without an error. Stepping over it would continue
	// mid-instruction, so it counts as a decode failure.
	if inst.Op == 0 || inst.Len <= 0 {
		return x86asm.Inst{}, fmt.Errorf("decoding instruction at +%#x (% x): unrecognized instruction", pc, code[pc:min(pc+8, len(code))])
	}
	return inst, nil
}
