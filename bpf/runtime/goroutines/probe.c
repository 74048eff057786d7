// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Go runtime: goroutines inherit the trace context of the goroutine that
// starts them, however deep.
//
// Probed function (Go >= 1.21):
//
//   func newproc1(fn *funcval, callergp *g, callerpc uintptr, parked bool, waitreason waitReason) *g
//
//   entry: RBX = callergp, the goroutine executing the go statement
//
// The new goroutine records its parent's goid (g.parentGoid), so a client
// call finds the context of its own goroutine or of its parent. For deeper
// chains, this probe copies the context one level down whenever a goroutine
// that has none, but whose parent has one, starts another: by the time a
// great-grandchild calls out, every ancestor on the way holds the context.
// It runs on the entry's stack-check jump, which the kernel emulates, so a
// go statement costs well under a microsecond more.

#include "common/kernel.h"
#include "common/goabi.h"
#include "common/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const __u64 off_g_goid;
volatile const __u64 off_g_parent_goid;

SEC("uprobe/runtime_newproc1")
int newproc1_enter(struct pt_regs *ctx)
{
	__u64 caller = GO_ARG2(ctx);
	if (!caller)
		return 0;
	__u64 goid = read_u64(caller + off_g_goid);
	if (!goid)
		return 0;
	struct go_key key = go_key_of(goid);
	if (bpf_map_lookup_elem(&go_ctx, &key))
		return 0;
	__u64 pgoid = read_u64(caller + off_g_parent_goid);
	if (!pgoid)
		return 0;
	struct go_key pkey = go_key_of(pgoid);
	struct go_trace_ctx *parent = bpf_map_lookup_elem(&go_ctx, &pkey);
	if (!parent)
		return 0;
	struct go_trace_ctx inherited = *parent;
	bpf_map_update_elem(&go_ctx, &key, &inherited, BPF_ANY);
	return 0;
}
