// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Children. A process traced from the kernel that forks (a server that
// forks per connection, as busybox httpd and inetd-style servers do; a
// pre-forking master replacing a worker) has its child traced from the
// fork on, and user space is told, so that the child's records are its
// own. Threads are not children. A process is forgotten when it exits
// (children and selected processes alike: a PID reused by another program
// is not traced); the exit of any process traced from the kernel is
// reported, so that user space drops what it held for it.
#pragma once

#include "syscalls/traced.h"

static __always_inline void emit_proc(__u32 pid, __u32 parent, __u8 kind)
{
	struct task_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_TASK);
	e->hdr.pid = pid;
	e->parent = parent;
	e->kind = kind;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, wakeup_flags());
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid || !kernel_traced(ptgid) || !bpf_map_lookup_elem(&traced_tgids, &ptgid))
		return 0;
	__u8 how = TRACED_CHILD;
	long err = bpf_map_update_elem(&traced_tgids, &ctgid, &how, BPF_NOEXIST);
	if (err) {
		// The table is full and the child goes untraced, or (-EEXIST)
		// it is traced already.
		if (err == -E2BIG)
			count(COUNTER_TRACED_FULL);
		return 0;
	}
	// The child runs only after this returns: its bit is set before any
	// syscall of its own, and before its exit can take it away.
	__sync_fetch_and_add(&word_of(ctgid)->children, tgid_bit(ctgid));
	bpf_map_update_elem(&conn_tgids, &ctgid, &how, BPF_NOEXIST);
	emit_proc(ctgid, ptgid, TASK_FORK);
	return 0;
}

// Removes tgid from the maps and its bits from tgid_bits (see there for
// who may change a bit).
static __always_inline void forget_tgid(__u32 tgid)
{
	struct tgid_word *w = word_of(tgid);
	__u64 bit = tgid_bit(tgid);
	__u8 *how = bpf_map_lookup_elem(&traced_tgids, &tgid);
	if (how) {
		bool child = *how == TRACED_CHILD;
		if (!bpf_map_delete_elem(&traced_tgids, &tgid))
			__sync_fetch_and_add(child ? &w->children : &w->kernel, -bit);
	}
	how = bpf_map_lookup_elem(&conn_tgids, &tgid);
	if (how) {
		bool selected = *how == TRACED_SELECTED;
		if (!bpf_map_delete_elem(&conn_tgids, &tgid) && selected)
			__sync_fetch_and_add(&w->conns, -bit);
	}
}

// The exit of a thread. That of a process's leader is reported when the
// process is traced from the kernel; the process is forgotten with its last
// thread (a leader may exit before the others), so that its PID, once
// reused, is not traced.
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (!followed(tgid))
		return 0;
	__u32 pid = BPF_CORE_READ(task, pid);
	if (pid == tgid && bpf_map_lookup_elem(&traced_tgids, &tgid))
		emit_proc(tgid, 0, TASK_EXIT);
	// The thread-group's count of live threads, already without this
	// one: zero when it is the last.
	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		forget_tgid(tgid);
	return 0;
}
