// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Go's internal register ABI on amd64 (ABIInternal, Go >= 1.17).
//
// Integer arguments and results travel in RAX, RBX, RCX, RDI, RSI, R8, R9,
// R10, R11, in that order; a struct or interface argument takes one register
// per word. R14 always holds the current goroutine's g.
#pragma once

#define GO_ARG1(regs) ((regs)->ax)
#define GO_ARG2(regs) ((regs)->bx)
#define GO_ARG3(regs) ((regs)->cx)
#define GO_ARG4(regs) ((regs)->di)
#define GO_ARG5(regs) ((regs)->si)
#define GO_ARG6(regs) ((regs)->r8)
#define GO_G(regs) ((regs)->r14)

// A Go string header.
struct go_string {
	__u64 ptr;
	__s64 len;
};

// A Go slice header.
struct go_slice {
	__u64 ptr;
	__s64 len;
	__s64 cap;
};

// A Go interface value: type word (itab or type pointer) and data pointer.
struct go_iface {
	__u64 tab;
	__u64 data;
};

static __always_inline __u64 read_u64(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

// Offset of fun[0] in runtime.itab (inter, _type, hash + pad).
#define ITAB_FUN0 24

// Whether the itab tab is of a type whose interface's first method (by
// name) is the function at fun0: how a concrete type behind an interface is
// recognised, with function addresses that pclntab gives even in a
// stripped binary. A fun0 of 0 (not in the binary) matches nothing.
static __always_inline bool itab_is(__u64 tab, __u64 fun0)
{
	return fun0 && tab && read_u64(tab + ITAB_FUN0) == fun0;
}

// Copy at most cap bytes of the Go string s into dst. Returns the number of
// bytes copied and sets bit in *cut when s was longer than cap.
static __always_inline __u16 copy_go_string(char *dst, __u64 cap, struct go_string s, __u8 *cut, __u8 bit)
{
	if (s.len <= 0 || !s.ptr)
		return 0;
	__u64 n = s.len;
	if (n > cap) {
		n = cap;
		*cut |= bit;
	}
	// The verifier must see n bounded in the register the read takes. A
	// check in C is not enough: clang may keep n on the stack from before
	// the check and reload it for the call, and verifiers before 6.12 do
	// not carry the check's bounds to a slot written while n was unbounded
	// ("R2 min value is negative" on 5.10 and 6.1). This clamp is the
	// check, in the register itself, right where n is used.
	asm volatile("if %[n] <= %[cap] goto +1\n\t%[n] = %[cap]" : [n] "+r"(n) : [cap] "r"(cap));
	if (bpf_probe_read_user(dst, n, (void *)s.ptr))
		return 0;
	return n;
}
