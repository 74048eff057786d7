// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Children. A process traced from the kernel that forks (a server that
// forks per connection, as busybox httpd and inetd-style servers do; a
// pre-forking master replacing a worker) has its child traced from the
// fork on, and user space is told, so that the child's records are its
// own. Threads are not children. A child is forgotten when it exits; so is
// the exit of any process traced from the kernel reported, so that user
// space drops what it held for it.
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
	if (ptgid == ctgid || !bpf_map_lookup_elem(&traced_tgids, &ptgid))
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
	bpf_map_update_elem(&conn_tgids, &ctgid, &how, BPF_ANY);
	emit_proc(ctgid, ptgid, TASK_FORK);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
	__u32 pid = BPF_CORE_READ(task, pid);
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (pid != tgid)
		return 0; // a thread; the process exits with its leader
	__u8 *how = bpf_map_lookup_elem(&traced_tgids, &tgid);
	if (!how)
		return 0;
	if (*how == TRACED_CHILD) {
		bpf_map_delete_elem(&traced_tgids, &tgid);
		bpf_map_delete_elem(&conn_tgids, &tgid);
	}
	emit_proc(tgid, 0, TASK_EXIT);
	return 0;
}
