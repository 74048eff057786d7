// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Phases: functions the configuration names (main.buildPrompt,
// github.com/acme/rag.(*Store).Search) become INTERNAL spans, children of
// the span active on their goroutine, parents of the calls made inside them.
//
// A phase starts at its function's entry (phase_enter, on the stack-check
// jump the kernel emulates) and ends at one of its RET instructions
// (phase_return, single-stepped: a Go function has no other place that
// surely runs once it is done, and a uretprobe would crash the program).
// Both programs serve every phase function of a process: user space puts
// the run-time address of each probed instruction in phase_sites, with the
// phase's number.
//
// Each goroutine keeps a stack of its open phases (phase_stacks). A frame
// is known by its depth on the goroutine stack, g.stack.hi - SP: at the
// entry and at the RETs SP points at the same return address, and the
// runtime keeps that distance when it moves a stack to grow it. So
//   - an entry hit again at the same depth is the same call, whose prologue
//     called morestack and started over;
//   - a recursive call is deeper, and is a frame of its own;
//   - frames deeper than a RET that runs, or as deep as an entry that runs,
//     were left without returning (a panic that unwound them, recovered
//     further up): they end then, marked PHASE_END_UNWOUND.
// While a phase is open, the goroutine's context in go_ctx (common/maps.h)
// is the phase's: HTTP client and database calls made inside it, on the
// goroutine or on goroutines it starts, become its children; at its end the
// context it replaced comes back.
//
// A phase whose RET never runs (a panic recovered by net/http, which then
// ends the goroutine; runtime.Goexit) ends when the request served on its
// goroutine ends or the goroutine exits (phase_goroutine_end, on the entry
// of net/http's request ends and of runtime.goexit1), marked
// PHASE_END_REQUEST; a goroutine that neither ends nor serves a request
// keeps it until the LRU table drops it.

#include "common/kernel.h"
#include "common/goabi.h"
#include "common/maps.h"
#include "phases/record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The record and the enums user space reads, in BTF for bpf2go -type
// (probes/phases/gen.go); never used.
struct phase_event *unused_phase_event __attribute__((unused));
enum phase_record *unused_phase_record __attribute__((unused));
enum phase_end *unused_phase_end __attribute__((unused));
enum phase_info *unused_phase_info __attribute__((unused));
enum phase_counter *unused_phase_counter __attribute__((unused));

volatile const __u64 off_g_goid;
volatile const __u64 off_g_parent_goid;

// runtime.g starts with its stack bounds, stack.lo and stack.hi: every
// function's stack check reads g.stackguard0 at 16(R14), right after them,
// so the compiler itself fixes this layout.
#define OFF_G_STACK_HI 8

// Phases open at once on one goroutine (a power of two). Calls nested
// deeper are not traced; the innermost open phase is marked.
#define PHASE_MAX_DEPTH 16

struct phase_frame {
	__u64 start_ns;
	__u64 depth; // g.stack.hi - SP at its entry
	struct span_ids ids;
	struct go_trace_ctx saved; // the goroutine's own context before it
	__u32 func;
	__u8 had_saved; // whether the goroutine had one
	__u8 info;      // enum phase_info
	__u8 pad[2];
};

struct phase_stack {
	__u32 n;
	__u32 pad;
	struct phase_frame f[PHASE_MAX_DEPTH];
};

// Open phases, by goid.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct phase_stack);
} phase_stacks SEC(".maps");

// The phase number of every probed instruction (the entry and each RET of
// every phase function), by run-time address; filled by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} phase_sites SEC(".maps");

// An empty stack to start a goroutine's from (too large for the BPF stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct phase_stack);
} phase_empty SEC(".maps");

// What user space must know was lost.
enum phase_counter {
	// A call was not traced: PHASE_MAX_DEPTH phases were open on its goroutine.
	PHASE_COUNTER_OVERFLOW = 0,
	// A RET matched no open phase (attached while the call was running).
	PHASE_COUNTER_NO_ENTRY = 1,
	// The table of goroutines with open phases was full.
	PHASE_COUNTER_FULL = 2,
	PHASE_COUNTER_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PHASE_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} phase_counters SEC(".maps");

static __always_inline void phase_count(enum phase_counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&phase_counters, &key);

	if (v)
		*v += 1;
}

static __always_inline void emit(const struct phase_frame *f, __u64 goid, __u64 end_ns, __u8 how, __u32 below)
{
	struct phase_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_PHASE);
	e->hdr.ts_ns = end_ns;
	e->start_ns = f->start_ns;
	e->goid = goid;
	e->ids = f->ids;
	e->func = f->func;
	e->end = how;
	e->depth = below;
	e->info = f->info;
	e->pad = 0;
	bpf_ringbuf_submit(e, wakeup_flags());
}

// Give the goroutine back the context it had before frame f began.
static __always_inline void restore(__u64 goid, const struct phase_frame *f)
{
	struct go_key key = go_key_of(goid);
	if (f->had_saved) {
		struct go_trace_ctx tc = f->saved;
		bpf_map_update_elem(&go_ctx, &key, &tc, BPF_ANY);
	} else {
		bpf_map_delete_elem(&go_ctx, &key);
	}
}

// End, as how, every open phase at depth or deeper (inclusive) or only
// deeper; with give_back, the goroutine gets the context the outermost of
// them replaced.
static __always_inline void pop_to(struct phase_stack *st, __u64 goid, __u64 depth, bool inclusive, __u64 now,
				   __u8 how, bool give_back)
{
	struct phase_frame *lowest = NULL;
	for (int k = 0; k < PHASE_MAX_DEPTH; k++) {
		__u32 n = st->n;
		if (n == 0 || n > PHASE_MAX_DEPTH)
			break;
		struct phase_frame *top = &st->f[(n - 1) & (PHASE_MAX_DEPTH - 1)];
		if (top->depth < depth || (!inclusive && top->depth == depth))
			break;
		emit(top, goid, now, how, n - 1);
		st->n = n - 1;
		lowest = top;
	}
	if (lowest && give_back)
		restore(goid, lowest);
}

static __always_inline struct phase_stack *stack_of(__u64 goid)
{
	struct phase_stack *st = bpf_map_lookup_elem(&phase_stacks, &goid);
	if (st)
		return st;
	__u32 zero = 0;
	struct phase_stack *empty = bpf_map_lookup_elem(&phase_empty, &zero);
	if (!empty)
		return NULL;
	if (bpf_map_update_elem(&phase_stacks, &goid, empty, BPF_NOEXIST) && !bpf_map_lookup_elem(&phase_stacks, &goid)) {
		phase_count(PHASE_COUNTER_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&phase_stacks, &goid);
}

// Which phase the probed instruction belongs to, its goroutine and the
// frame's depth.
static __always_inline bool where(struct pt_regs *ctx, __u32 *func, __u64 *goid, __u64 *depth)
{
	__u64 ip = PT_REGS_IP(ctx);
	__u32 *id = bpf_map_lookup_elem(&phase_sites, &ip);
	if (!id)
		return false;
	*func = *id;
	__u64 g = GO_G(ctx);
	*goid = read_u64(g + off_g_goid);
	__u64 hi = read_u64(g + OFF_G_STACK_HI);
	__u64 sp = PT_REGS_SP(ctx);
	if (!*goid || hi < sp)
		return false;
	*depth = hi - sp;
	return true;
}

// Any phase function's entry. RAX... are its arguments; only R14 (g) and
// SP are read.
SEC("uprobe/phase_enter")
int phase_enter(struct pt_regs *ctx)
{
	__u32 func;
	__u64 goid, depth;
	if (!where(ctx, &func, &goid, &depth))
		return 0;
	struct phase_stack *st = stack_of(goid);
	if (!st)
		return 0;
	__u32 n = st->n;
	if (n > 0 && n <= PHASE_MAX_DEPTH) {
		struct phase_frame *top = &st->f[(n - 1) & (PHASE_MAX_DEPTH - 1)];
		// The prologue called morestack and the function started over.
		if (top->depth == depth && top->func == func)
			return 0;
	}
	__u64 now = bpf_ktime_get_ns();
	pop_to(st, goid, depth, true, now, PHASE_END_UNWOUND, true);
	n = st->n;
	if (n >= PHASE_MAX_DEPTH) {
		phase_count(PHASE_COUNTER_OVERFLOW);
		st->f[(PHASE_MAX_DEPTH - 1)].info |= PHASE_INFO_OVERFLOW;
		return 0;
	}
	struct phase_frame *f = &st->f[n & (PHASE_MAX_DEPTH - 1)];
	f->start_ns = now;
	f->depth = depth;
	f->func = func;
	f->info = 0;
	__builtin_memset(f->pad, 0, sizeof(f->pad));
	__builtin_memset(&f->ids, 0, sizeof(f->ids));

	struct go_key key = go_key_of(goid);
	struct go_trace_ctx *own = bpf_map_lookup_elem(&go_ctx, &key);
	struct go_trace_ctx *parent = own;
	if (!parent) {
		__u64 pgoid = read_u64(GO_G(ctx) + off_g_parent_goid);
		if (pgoid) {
			struct go_key pkey = go_key_of(pgoid);
			parent = bpf_map_lookup_elem(&go_ctx, &pkey);
		}
	}
	struct go_trace_ctx tc = {};
	f->had_saved = own != NULL;
	if (own)
		f->saved = *own;
	else
		__builtin_memset(&f->saved, 0, sizeof(f->saved));
	if (parent) {
		__builtin_memcpy(f->ids.trace_id, parent->trace_id, sizeof(f->ids.trace_id));
		__builtin_memcpy(f->ids.parent_id, parent->span_id, sizeof(f->ids.parent_id));
		__builtin_memcpy(tc.received_parent, parent->received_parent, sizeof(tc.received_parent));
	} else {
		random_bytes(f->ids.trace_id, sizeof(f->ids.trace_id));
	}
	random_bytes(f->ids.span_id, sizeof(f->ids.span_id));
	st->n = n + 1;
	// Calls made inside the phase are its children.
	__builtin_memcpy(tc.trace_id, f->ids.trace_id, sizeof(tc.trace_id));
	__builtin_memcpy(tc.span_id, f->ids.span_id, sizeof(tc.span_id));
	bpf_map_update_elem(&go_ctx, &key, &tc, BPF_ANY);
	return 0;
}

// Every RET of every phase function.
SEC("uprobe/phase_return")
int phase_return(struct pt_regs *ctx)
{
	__u32 func;
	__u64 goid, depth;
	if (!where(ctx, &func, &goid, &depth))
		return 0;
	struct phase_stack *st = bpf_map_lookup_elem(&phase_stacks, &goid);
	if (!st)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	pop_to(st, goid, depth, false, now, PHASE_END_UNWOUND, true);
	__u32 n = st->n;
	if (n == 0 || n > PHASE_MAX_DEPTH) {
		phase_count(PHASE_COUNTER_NO_ENTRY);
		return 0;
	}
	struct phase_frame *top = &st->f[(n - 1) & (PHASE_MAX_DEPTH - 1)];
	if (top->depth != depth || top->func != func) {
		// A call nested past the stack's room, or one that began
		// before the probes were in.
		if (top->depth < depth && !(top->info & PHASE_INFO_OVERFLOW))
			phase_count(PHASE_COUNTER_NO_ENTRY);
		return 0;
	}
	emit(top, goid, now, PHASE_END_RETURN, n - 1);
	st->n = n - 1;
	restore(goid, top);
	return 0;
}

// The run-time address range of a function that calls a request end in the
// middle of the request (net/http's hijackLocked calls abortPendingRead
// when a handler hijacks its connection): a call from there ends nothing.
volatile const __u64 not_from_start;
volatile const __u64 not_from_end;

// The end of a request served on this goroutine, or the goroutine's exit:
// whatever phase is still open there will never return.
SEC("uprobe/phase_goroutine_end")
int phase_goroutine_end(struct pt_regs *ctx)
{
	if (not_from_start) {
		// At the entry, before the prologue, SP holds the return address.
		__u64 ret = read_u64(PT_REGS_SP(ctx));
		if (ret >= not_from_start && ret < not_from_end)
			return 0;
	}
	__u64 goid = read_u64(GO_G(ctx) + off_g_goid);
	struct phase_stack *st = bpf_map_lookup_elem(&phase_stacks, &goid);
	if (!st)
		return 0;
	__u32 n = st->n;
	if (n > 0 && n <= PHASE_MAX_DEPTH) {
		struct phase_frame *top = &st->f[(n - 1) & (PHASE_MAX_DEPTH - 1)];
		__u8 open[8];
		__builtin_memcpy(open, top->ids.span_id, sizeof(open));
		pop_to(st, goid, 0, true, bpf_ktime_get_ns(), PHASE_END_REQUEST, false);
		// The server's own end takes its context back; the phase's,
		// if still there, goes (whichever of the two runs first).
		struct go_key key = go_key_of(goid);
		struct go_trace_ctx *tc = bpf_map_lookup_elem(&go_ctx, &key);
		if (tc && span_id_eq(tc->span_id, open))
			bpf_map_delete_elem(&go_ctx, &key);
	}
	bpf_map_delete_elem(&phase_stacks, &goid);
	return 0;
}
