// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The syscalls seen, and the two programs that see them: one on the raw
// sys_enter tracepoint and one on sys_exit, through BTF (tp_btf: no tracefs),
// each dispatching to the handlers of io.h and conns.h by syscall number.
//
// While any program is on a syscall tracepoint, every syscall of every
// process on the host takes the kernel's slower tracing path and runs it;
// what matters is how little a process nobody traces pays there. In that
// order: the syscall number against a constant mask (no memory access), the
// process's bit in tgid_bits (one load), and, for a traced process only,
// whether the syscall is a 32-bit one (its numbers are not these; the
// per-syscall tracepoints ignore those too). A perf-event tracepoint per
// syscall instead (sys_enter_read, ...) costs a hooked syscall more than
// these two programs do even when its program is empty: the perf path
// copies the arguments and sets up a record before any program runs (see
// the README's Cost).
//
// Numbers are x86-64's: the object is built for amd64 only.
#pragma once

#include "syscalls/io.h"
#include "syscalls/conns.h"

#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_accept4 288

#define NR_BIT(nr) (1ULL << (nr))

// Syscalls whose entry is handled: reads note their buffer, writes are
// looked at, closes end a descriptor.
#define ENTER_MASK                                                                                                     \
	(NR_BIT(NR_read) | NR_BIT(NR_write) | NR_BIT(NR_close) | NR_BIT(NR_readv) | NR_BIT(NR_writev) |                 \
	 NR_BIT(NR_sendfile) | NR_BIT(NR_sendto) | NR_BIT(NR_recvfrom) | NR_BIT(NR_sendmsg) | NR_BIT(NR_recvmsg))

// Syscalls whose exit is handled: reads (their data), writes of a
// response's body (the bytes that went), accepts (which process owns the
// connection); accept4 is above 63 and tested alone.
#define EXIT_MASK                                                                                                      \
	(NR_BIT(NR_read) | NR_BIT(NR_write) | NR_BIT(NR_readv) | NR_BIT(NR_writev) | NR_BIT(NR_sendfile) |              \
	 NR_BIT(NR_accept) | NR_BIT(NR_sendto) | NR_BIT(NR_recvfrom) | NR_BIT(NR_sendmsg) | NR_BIT(NR_recvmsg))

// thread_info.status bit of a task in a 32-bit syscall (x86).
#define TS_COMPAT 0x0002

static __always_inline bool compat_syscall(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, thread_info.status) & TS_COMPAT;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long nr)
{
	if ((__u64)nr > 63 || !(ENTER_MASK & NR_BIT(nr)))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!kernel_traced(id >> 32) || compat_syscall())
		return 0;
	// The arguments, in the registers of the x86-64 syscall convention.
	__s32 fd = (__s32)regs->di;
	__u64 a1 = regs->si, a2 = regs->dx;
	__u64 iov = a1, count = a2;
	switch (nr) {
	case NR_read:
	case NR_recvfrom:
		read_enter(id, fd, a1, a2);
		break;
	case NR_write:
	case NR_sendto:
		write_enter(id, fd, a1, (__s64)a2);
		break;
	case NR_recvmsg:
		count = 0;
		readv_enter(id, fd, msg_iov(a1, &count));
		break;
	case NR_readv:
		readv_enter(id, fd, iov);
		break;
	case NR_sendmsg:
		count = 0;
		iov = msg_iov(a1, &count);
		__attribute__((fallthrough)); // one copy of the writev handler
	case NR_writev:
		writev_enter(id, fd, iov, count);
		break;
	case NR_sendfile:
		sendfile_enter(id, fd);
		break;
	case NR_close:
		close_enter(id, fd);
		break;
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	__u64 nr = regs->orig_ax;
	if (nr > 63 ? nr != NR_accept4 : !(EXIT_MASK & NR_BIT(nr)))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	bool accept = nr == NR_accept || nr == NR_accept4;
	if (!(accept ? conns_followed(tgid) : kernel_traced(tgid)) || compat_syscall())
		return 0;
	switch (nr) {
	case NR_read:
	case NR_recvfrom:
	case NR_readv:
	case NR_recvmsg:
		read_exit(id, ret);
		break;
	case NR_write:
	case NR_sendto:
	case NR_writev:
	case NR_sendmsg:
	case NR_sendfile:
		body_exit(id, ret);
		break;
	case NR_accept:
	case NR_accept4:
		accepted(tgid, ret);
		break;
	}
	return 0;
}
