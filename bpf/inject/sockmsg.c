// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Outgoing trace context, added to HTTP/1.x requests as they are sent.
//
// A cgroup sockops program puts every TCP connection that a process of the
// traced cgroup opens into a sockhash; an sk_msg program on that sockhash
// then sees every write on those connections before TCP does. The Go client
// probe (persistConn.roundTrip) has already written the client span's
// context under the connection's addresses (conn_ctx) by the time the
// request is written, so the program finds it from the socket's own
// addresses and inserts
//
//   traceparent: 00-<trace id>-<span id>-01\r\n
//
// as the last line of the header block. Nothing else in the stream changes.
//
// Safety rules, in order:
// - Only the first write after a context is armed is looked at (the socket
//   remembers which context it decided on), so a body that happens to look
//   like a request (an Expect: 100-continue upload, a request inside a POST)
//   is never touched. Go writes a request's head in its first write and
//   reuses a connection only once the previous request is fully written.
// - That write must start with an HTTP/1.x request line and hold the whole
//   header block within its first 4 KiB (Go's write buffer); otherwise it
//   is sent unchanged and counted (COUNTER_INJECT_SKIPPED).
// - A request that already has a traceparent keeps it (COUNTER_INJECT_KEPT),
//   unless that header forwards the one the client's parent server span
//   received (a proxy passing its caller's traceparent on: same trace id,
//   and the parent id it received): then its parent id is overwritten in
//   place with the client span's, 16 hex digits for 16, nothing moved
//   (COUNTER_INJECT_REPLACED_FORWARDED). A header the application set
//   itself names a span the agent never saw, and is kept.
// - Every byte of the inserted gap is overwritten; when a helper fails the
//   gap is removed again, so a request gets the whole header or nothing
//   (COUNTER_INJECT_FAILED).
//
// Needs open-coded iterators (bpf_iter_num, Linux 6.4): the header block is
// scanned byte by byte, which plain loops cannot do within the verifier's
// limits. User space probes for this by loading the programs.

#include "common/kernel.h"
#include <bpf/bpf_endian.h>
#include "common/maps.h"
#include "common/traceparent_line.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

// Client connections of the traced cgroup, by socket cookie. A socket
// leaves the map by itself when it closes; closing the map releases the rest.
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} inject_socks SEC(".maps");

// Per connection: the armed_ns of the last context decided on.
struct inject_state {
	__u64 armed_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inject_state);
} inject_state SEC(".maps");

// Go's client writes through a 4 KiB buffer: a head that fits is in the
// first write.
#define MAX_HEAD 4096

SEC("sockops")
int inject_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	__u32 family = skops->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(skops);
	// Fails when the socket already belongs to another sockhash (another
	// agent on the same cgroup). Its requests then count as armed and never
	// decided on, which user space reports.
	bpf_sock_hash_update(skops, &inject_socks, &cookie, BPF_NOEXIST);
	return 1;
}

static __always_inline void mapped_v4(__u8 dst[16], __u32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

// The connection as the Go client probe keyed it (make_tuple in
// common/netconn.h): this side is the client.
static __always_inline bool tuple_of(struct sk_msg_md *msg, struct conn_tuple *t)
{
	__u32 family = msg->family;
	if (family == AF_INET) {
		mapped_v4(t->client_ip, msg->local_ip4);
		mapped_v4(t->server_ip, msg->remote_ip4);
	} else if (family == AF_INET6) {
		__u32 ip[4];
		ip[0] = msg->local_ip6[0];
		ip[1] = msg->local_ip6[1];
		ip[2] = msg->local_ip6[2];
		ip[3] = msg->local_ip6[3];
		__builtin_memcpy(t->client_ip, ip, 16);
		ip[0] = msg->remote_ip6[0];
		ip[1] = msg->remote_ip6[1];
		ip[2] = msg->remote_ip6[2];
		ip[3] = msg->remote_ip6[3];
		__builtin_memcpy(t->server_ip, ip, 16);
	} else {
		return false;
	}
	t->client_port = msg->local_port;
	// remote_port holds the port in network order in its upper 16 bits on
	// current kernels and in its lower 16 bits on some older ones.
	__u32 rp = msg->remote_port;
	__u32 port = bpf_ntohl(rp);
	if (port > 0xffff)
		port = bpf_ntohs((__u16)rp);
	t->server_port = port;
	t->pad = 0;
	return true;
}

// Little-endian words of the byte strings compared below.
#define WORD8(a, b, c, d, e, f, g, h)                                                        \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 | \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)
#define WORD4(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
// Setting bit 5 folds ASCII letters to lower case; ':' already has it.
#define LOWER8 0x2020202020202020ULL
#define LOWER4 0x20202020U

// msg->data and msg->data_end, each read with a fixed offset from the
// context pointer: clang otherwise merges the two loads into one through a
// computed offset, which the verifier refuses ("modified ctx ptr").
static __always_inline void *msg_data(struct sk_msg_md *msg)
{
	void *p;

	asm volatile("%0 = *(u64 *)(%1 + 0)" : "=r"(p) : "r"(msg));
	return p;
}

static __always_inline void *msg_data_end(struct sk_msg_md *msg)
{
	void *p;

	asm volatile("%0 = *(u64 *)(%1 + 8)" : "=r"(p) : "r"(msg));
	return p;
}

// Scan results.
enum head {
	HEAD_UNDECIDED = 0,
	HEAD_END,        // *pos is where the blank line that ends the head starts
	HEAD_HAS_TP,     // a traceparent line is already there, at *pos
	HEAD_NOT_HTTP1,  // the first line is not an HTTP/1.x request line
	HEAD_TOO_LARGE,  // no end of head within MAX_HEAD bytes of this write
};

// Look at the head of the request that starts this write, within its first
// limit bytes (limit <= MAX_HEAD, all of them in the linear part).
static __always_inline enum head scan_head(struct sk_msg_md *msg, __u32 limit, __u32 *pos)
{
	enum head res = HEAD_TOO_LARGE;
	bool first_line = true;
	int *v;

	void *data = msg_data(msg);
	void *end = msg_data_end(msg);
	if (data + 1 > end)
		return HEAD_NOT_HTTP1;
	__u8 c0 = *(__u8 *)data;
	if (c0 < 'A' || c0 > 'Z')
		return HEAD_NOT_HTTP1;

	struct bpf_iter_num it;
	bpf_iter_num_new(&it, 0, MAX_HEAD);
	while ((v = bpf_iter_num_next(&it))) {
		__u32 i = *v;
		if (i >= limit)
			break;
		i &= MAX_HEAD - 1;
		if (data + i + 1 > end)
			break;
		if (*(__u8 *)(data + i) != '\n')
			continue;
		if (first_line) {
			// "... HTTP/1.x\r\n"
			// i - 10 .. i - 1: " HTTP/1.x\r"
			if (i < 12) {
				res = HEAD_NOT_HTTP1;
				break;
			}
			__u32 j = i - 10;
			barrier_var(j);
			j &= MAX_HEAD - 1;
			void *tail = data + j;
			if (tail + 10 > end) {
				res = HEAD_NOT_HTTP1;
				break;
			}
			__u64 version = *(__u64 *)tail;
			__u8 cr = *(__u8 *)(tail + 9);
			if (version != WORD8(' ', 'H', 'T', 'T', 'P', '/', '1', '.') || cr != '\r') {
				res = HEAD_NOT_HTTP1;
				break;
			}
			first_line = false;
		}
		__u32 s = i + 1;
		s &= 2 * MAX_HEAD - 1;
		if (data + s + 2 > end)
			break; // the head goes on past this write
		if (*(__u16 *)(data + s) == WORD4('\r', '\n', 0, 0)) {
			*pos = s;
			res = HEAD_END;
			break;
		}
		if (data + s + 12 > end)
			continue;
		__u64 name = *(__u64 *)(data + s) | LOWER8;
		__u32 rest = *(__u32 *)(data + s + 8) | LOWER4;
		if (name == WORD8('t', 'r', 'a', 'c', 'e', 'p', 'a', 'r') && rest == WORD4('e', 'n', 't', ':')) {
			*pos = s;
			res = HEAD_HAS_TP;
			break;
		}
	}
	bpf_iter_num_destroy(&it);
	return res;
}

#define TP_VALUE_LEN 55 // "00-" 32 hex "-" 16 hex "-" 2 hex
#define TP_NAME_LEN 12  // "traceparent:"

// The traceparent line at pos names the trace of ctx and, as parent, the
// span its server span received it from: the client forwards its caller's
// header. Make the client span its parent, in place.
static __always_inline enum counter replace_forwarded(struct sk_msg_md *msg, __u32 pos, __u32 limit,
						       const struct go_trace_ctx *ctx)
{
	__u64 received;
	__builtin_memcpy(&received, ctx->received_parent, sizeof(received));
	if (!received)
		return COUNTER_INJECT_KEPT; // its server span received no traceparent
	void *data = msg_data(msg);
	void *end = msg_data_end(msg);
	__u32 v = pos + TP_NAME_LEN;
	// Optional whitespace before the value; Go writes one space.
#pragma unroll
	for (int i = 0; i < 2; i++) {
		__u32 j = v & (MAX_HEAD - 1);
		if (data + j + 1 > end || *(__u8 *)(data + j) != ' ')
			break;
		v++;
	}
	if (v + TP_VALUE_LEN > limit)
		return COUNTER_INJECT_KEPT;
	barrier_var(v);
	v &= MAX_HEAD - 1;
	char *val = data + v;
	if ((void *)val + TP_VALUE_LEN > end)
		return COUNTER_INJECT_KEPT;
	if (val[2] != '-' || val[35] != '-' || val[52] != '-')
		return COUNTER_INJECT_KEPT;
	bool same = true;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		same = same && val[3 + 2 * i] == hex_digit(ctx->trace_id[i] >> 4) &&
		       val[4 + 2 * i] == hex_digit(ctx->trace_id[i] & 15);
	}
#pragma unroll
	for (int i = 0; i < 8; i++) {
		same = same && val[36 + 2 * i] == hex_digit(ctx->received_parent[i] >> 4) &&
		       val[37 + 2 * i] == hex_digit(ctx->received_parent[i] & 15);
	}
	if (!same)
		return COUNTER_INJECT_KEPT;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		val[36 + 2 * i] = hex_digit(ctx->span_id[i] >> 4);
		val[37 + 2 * i] = hex_digit(ctx->span_id[i] & 15);
	}
	return COUNTER_INJECT_REPLACED_FORWARDED;
}

static __always_inline enum counter inject(struct sk_msg_md *msg, const struct go_trace_ctx *ctx)
{
	__u32 limit = msg->size;
	if (limit > MAX_HEAD)
		limit = MAX_HEAD;
	// At entry only the first scatterlist element is linear, which can be
	// shorter than the head: make the first limit bytes linear.
	if (msg_data(msg) + limit > msg_data_end(msg)) {
		if (bpf_msg_pull_data(msg, 0, limit, 0))
			return COUNTER_INJECT_FAILED;
		if (msg_data(msg) + limit > msg_data_end(msg))
			return COUNTER_INJECT_FAILED;
	}

	__u32 pos = 0;
	switch (scan_head(msg, limit, &pos)) {
	case HEAD_END:
		break;
	case HEAD_HAS_TP:
		return replace_forwarded(msg, pos, limit, ctx);
	default:
		return COUNTER_INJECT_SKIPPED;
	}

	char line[TP_LINE_LEN];
	format_traceparent_line(line, ctx);
	if (bpf_msg_push_data(msg, pos, TP_LINE_LEN, 0))
		return COUNTER_INJECT_FAILED;
	// The push invalidated every data pointer; the gap holds whatever the
	// kernel's new page had. Make it linear, then fill all of it.
	if (bpf_msg_pull_data(msg, pos, pos + TP_LINE_LEN, 0))
		goto undo;
	void *data = msg_data(msg);
	if (data + TP_LINE_LEN > msg_data_end(msg))
		goto undo;
	__builtin_memcpy(data, line, TP_LINE_LEN);
	return COUNTER_INJECTED;
undo:
	bpf_msg_pop_data(msg, pos, TP_LINE_LEN, 0);
	return COUNTER_INJECT_FAILED;
}

SEC("sk_msg")
int inject_traceparent(struct sk_msg_md *msg)
{
	struct conn_tuple t = {};
	if (!tuple_of(msg, &t))
		return SK_PASS;
	struct conn_trace_ctx *tc = bpf_map_lookup_elem(&conn_ctx, &t);
	if (!tc)
		return SK_PASS;
	__u64 armed = tc->armed_ns;
	struct go_trace_ctx ctx = tc->ctx;
	if (bpf_ktime_get_ns() - armed > CONN_CTX_MAX_AGE_NS)
		return SK_PASS;
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct inject_state *st = bpf_sk_storage_get(&inject_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(COUNTER_INJECT_FAILED);
		return SK_PASS;
	}
	// Decided on at this request's first write.
	if (st->armed_ns == armed)
		return SK_PASS;
	st->armed_ns = armed;
	count(inject(msg, &ctx));
	return SK_PASS;
}
