// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Maps shared by every probe. Each object declares them so that its programs
// can reference them; at load time user space replaces them with one instance
// owned by the agent, so all probes write into the same ring buffer.
#pragma once

#include "common/event.h"

// Counters of things user space must know were lost, indexed by enum counter.
enum counter {
	// bpf_ringbuf_reserve failed: the reader fell behind and the record was dropped.
	COUNTER_RINGBUF_FULL = 0,
	// A return probe found no matching entry (attached while a request was in flight).
	COUNTER_NO_ENTRY = 1,
	// The in-flight table was full and an entry could not be recorded.
	COUNTER_INFLIGHT_FULL = 2,
	// Reading the traced process's memory failed.
	COUNTER_READ_FAILED = 3,
	// Outgoing trace context injection (see bpf/inject/), per request:
	// a client wrote its context under a plain TCP connection (conn_ctx).
	COUNTER_INJECT_ARMED = 4,
	// A traceparent header was added to the request.
	COUNTER_INJECTED = 5,
	// The request already carried a traceparent and was left as it was.
	COUNTER_INJECT_KEPT = 6,
	// The request could not be changed safely (not HTTP/1.x, header block
	// too large, no room) and was sent unchanged.
	COUNTER_INJECT_SKIPPED = 7,
	// A kernel helper failed; the request was sent unchanged.
	COUNTER_INJECT_FAILED = 8,
	// A child of a process traced from the kernel was not traced: the
	// table of traced processes (traced_tgids) was full.
	COUNTER_TRACED_FULL = 9,
	// A request carried the traceparent its server span received (a proxy
	// forwarding its caller's header): its parent id was replaced by the
	// client span's, in place (sk_msg).
	COUNTER_INJECT_REPLACED_FORWARDED = 10,
	// Such a forwarded traceparent was left as it was, because it could not
	// be changed safely (write-user: its bytes are the proxy's own).
	COUNTER_INJECT_KEPT_FORWARDED = 11,
	// A write or read of a model call's body was not copied whole (past
	// its byte budget, or longer than a record's head and tail): the span
	// says which body was cut.
	COUNTER_GENAI_UNCOPIED = 12,
	// TLS plaintext was read or written (bpf/openssl) whose socket could
	// not be found: it was not reported.
	COUNTER_TLS_NO_SOCKET = 15,
	COUNTER_MAX = 16,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	// Resized by user space before load.
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Trace context of the innermost span active on a goroutine, by goid: set
// by a server span while its handler runs, inherited by goroutines the
// handler starts, read by client spans to find their parent. goids are never
// reused, so a stale entry can only make a late call join a finished trace.
struct go_trace_ctx {
	__u8 trace_id[16];
	__u8 span_id[8];
	// The parent id of the traceparent the server span received, zero when
	// it received none. An outgoing request that carries this very trace id
	// and parent id forwards that header (a proxy passing its caller's
	// traceparent on): its parent must become the client span that sends it.
	// A header the application set itself names a span the agent never saw.
	__u8 received_parent[8];
};

// goids are numbered per process, and one agent traces many processes:
// the key holds the process too.
struct go_key {
	__u32 tgid;
	__u32 pad;
	__u64 goid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct go_key);
	__type(value, struct go_trace_ctx);
} go_ctx SEC(".maps");

// The go_ctx key of goroutine goid of the current process.
static __always_inline struct go_key go_key_of(__u64 goid)
{
	struct go_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .pad = 0, .goid = goid};
	return k;
}

// A TCP connection between two traced processes on this host, as the
// client sees it.
struct conn_tuple {
	__u8 client_ip[16];
	__u8 server_ip[16];
	__u16 client_port;
	__u16 server_port;
	__u32 pad;
};

// Trace context of the client span about to send a request on a
// connection (ctx.received_parent: what a forwarded traceparent in that
// request names as its parent): written by the client probe just before the
// request goes out,
// taken (and deleted) by the server probe of a traced process on the same
// host when that request arrives, so that the server span becomes the
// client span's child with nothing added to the traffic. HTTP/1.1 sends the
// next request of a keep-alive connection only after the previous answer,
// so one entry per connection is enough; LRU evicts the entries of
// connections whose server is not traced.
struct conn_trace_ctx {
	struct go_trace_ctx ctx;
	__u64 armed_ns; // when the client wrote it (bpf_ktime_get_ns)
};

// How long an entry stays valid. The request usually follows its entry
// within microseconds, but on a host short of CPU (50 concurrent calls in an
// emulated guest took over 5 s) the server may start it seconds later; an
// entry older than this belongs to a request that was never sent (a write
// that failed) and must not be given to a later connection that happens to
// reuse the same addresses and ports.
#define CONN_CTX_MAX_AGE_NS (30ULL * 1000 * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_tuple);
	__type(value, struct conn_trace_ctx);
} conn_ctx SEC(".maps");

// Element 0 becomes 1 once any traced client has written into conn_ctx:
// until then servers skip looking for a connection context, which costs
// them two reads of the target's memory and two map lookups per request.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} conn_ctx_armed SEC(".maps");

// Fill n bytes with random data (n a multiple of 4).
static __always_inline void random_bytes(__u8 *dst, int n)
{
	for (int i = 0; i + 4 <= n; i += 4) {
		__u32 r = bpf_get_prandom_u32();
		__builtin_memcpy(dst + i, &r, 4);
	}
}

static __always_inline bool span_id_eq(const __u8 *a, const __u8 *b)
{
	__u64 x, y;

	__builtin_memcpy(&x, a, 8);
	__builtin_memcpy(&y, b, 8);
	return x == y;
}

static __always_inline bool trace_id_eq(const __u8 *a, const __u8 *b)
{
	return span_id_eq(a, b) && span_id_eq(a + 8, b + 8);
}

// Ring buffer fill level, in bytes, past which a record wakes the reader.
// Below it records are written without a wakeup and the reader polls, which
// spares the traced thread the cost of an IPI on every request.
volatile const __u64 wakeup_threshold = 1 << 20;

static __always_inline void count(enum counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += 1;
}

static __always_inline __u64 wakeup_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > wakeup_threshold)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void fill_header(struct event_header *hdr, __u8 type)
{
	hdr->type = type;
	hdr->flags = 0;
	hdr->pad = 0;
	hdr->pid = bpf_get_current_pid_tgid() >> 32;
	hdr->ts_ns = bpf_ktime_get_ns();
}
