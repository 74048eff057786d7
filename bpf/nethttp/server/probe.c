// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Go net/http server: one span per request served.
//
// Probed function (Go >= 1.17, amd64 register ABI):
//
//   func (sh serverHandler) ServeHTTP(rw ResponseWriter, req *Request)
//
//   RAX = sh.srv (*Server, the struct's only word)
//   RBX = rw's itab, RCX = rw's data (*response for HTTP/1.x)
//   RDI = req
//
// The entry program only remembers the start time and the two pointers, keyed
// by goroutine, so the common path costs one map update. Everything else is
// read at return, when the handler has set the status and ServeMux has set
// Request.Pattern. The return program runs from uprobes placed on every RET
// instruction of ServeHTTP: a uretprobe would rewrite the return address on
// the goroutine stack, which Go moves, and crash the process.

#include "common/kernel.h"
#include "common/goabi.h"
#include "common/maps.h"
#include "common/netconn.h"
#include "nethttp/traceparent.h"
#include "nethttp/server/record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The record and the enums user space reads, in BTF for bpf2go -type
// (probes/nethttp/server/gen.go); never used.
struct http_server_event *unused_http_server_event __attribute__((unused));
enum http_server_record *unused_http_server_record __attribute__((unused));
enum http_server_info *unused_http_server_info __attribute__((unused));

// Struct field offsets of the traced binary's Go version, set before load.
volatile const __u64 off_g_goid;
volatile const __u64 off_req_method;
volatile const __u64 off_req_url;
volatile const __u64 off_req_proto_major;
volatile const __u64 off_req_proto_minor;
volatile const __u64 off_req_content_length;
volatile const __u64 off_req_host;
volatile const __u64 off_req_remote_addr;
volatile const __u64 off_req_pattern;
volatile const __u8 has_pattern;
volatile const __u64 off_url_path;
volatile const __u64 off_url_raw_query;
volatile const __u64 off_resp_conn;
volatile const __u64 off_resp_status;
volatile const __u64 off_resp_written;
volatile const __u64 off_conn_rwc;
volatile const __u64 off_conn_tls_state;

// Concrete types behind interfaces are recognised by their itab's first
// method, whose address pclntab gives even in a stripped binary: an
// interface's methods are sorted by name, so fun[0] of a ResponseWriter itab
// is Header and fun[0] of a net.Conn itab is Close. These are the addresses
// of net/http.(*response).Header and net.(*TCPConn).Close (tcpconn_close_fn,
// in common/netconn.h); zero disables the reads that depend on them rather
// than guessing.
volatile const __u64 response_header_fn;

struct inflight {
	__u64 start_ns;
	__u64 goid;
	struct span_ids ids;
	struct go_string tracestate; // in the request's Header, alive until return
	__u8 remote_parent;
	__u8 pad[7];
	__u64 req;
	__u64 resp_tab;
	__u64 resp;
};

// Requests being served, keyed by the goroutine's g pointer. LRU so that
// entries whose return never comes (a handler that panics) age out instead
// of filling the table.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight);
} server_inflight SEC(".maps");

// Addresses of a connection, cached by the net/http.conn pointer and the
// net.Conn behind it: they are the same for every request of a keep-alive
// connection, and finding them takes several dependent reads.
struct conn_key {
	__u64 conn;
	__u64 rwc;
};

struct conn_addrs {
	struct tcp_addr local;
	struct tcp_addr remote;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct conn_key);
	__type(value, struct conn_addrs);
} server_conn_addrs SEC(".maps");

// The addresses of net/http.conn conn whose rwc is the net.Conn rwc.
static __always_inline bool conn_addrs(struct conn_addrs *out, __u64 conn, struct go_iface rwc)
{
	struct conn_key key = {.conn = conn, .rwc = rwc.data};
	struct conn_addrs *cached = bpf_map_lookup_elem(&server_conn_addrs, &key);
	if (cached) {
		*out = *cached;
		return true;
	}
	if (!read_conn_addrs(rwc, &out->local, &out->remote))
		return false;
	bpf_map_update_elem(&server_conn_addrs, &key, out, BPF_ANY);
	return true;
}

// A traced client on this host that sent this request left its span's
// context under the connection's addresses (see conn_ctx): continue it.
static __always_inline void take_conn_ctx(struct inflight *in)
{
	__u32 zero = 0;
	__u32 *armed = bpf_map_lookup_elem(&conn_ctx_armed, &zero);
	if (!armed || !*armed)
		return;
	if (!itab_is(in->resp_tab, response_header_fn))
		return;
	__u64 conn = read_u64(in->resp + off_resp_conn);
	if (!conn)
		return;
	struct go_iface rwc = {};
	if (bpf_probe_read_user(&rwc, sizeof(rwc), (void *)(conn + off_conn_rwc)))
		return;
	struct conn_addrs both;
	if (!conn_addrs(&both, conn, rwc))
		return;
	struct conn_tuple t;
	make_tuple(&t, &both.remote, &both.local);
	struct conn_trace_ctx *tc = bpf_map_lookup_elem(&conn_ctx, &t);
	if (!tc)
		return;
	if (in->start_ns - tc->armed_ns < CONN_CTX_MAX_AGE_NS) {
		__builtin_memcpy(in->ids.trace_id, tc->ctx.trace_id, sizeof(in->ids.trace_id));
		__builtin_memcpy(in->ids.parent_id, tc->ctx.span_id, sizeof(in->ids.parent_id));
		in->remote_parent = 1;
	}
	bpf_map_delete_elem(&conn_ctx, &t);
}

SEC("uprobe/serverHandler_ServeHTTP")
int serve_http_enter(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	__u64 req = GO_ARG4(ctx);
	__u64 goid = read_u64(g + off_g_goid);
	struct inflight *cur = bpf_map_lookup_elem(&server_inflight, &g);

	// The prologue may call morestack and jump back to the first
	// instruction, which fires this probe a second time for the same call:
	// same goroutine, same request. A g struct reused by a new goroutine
	// has another goid, so a stale entry left by a handler that panicked
	// is replaced, not mistaken for this call.
	if (cur && cur->req == req && cur->goid == goid)
		return 0;

	struct inflight in = {
		.start_ns = bpf_ktime_get_ns(),
		.goid = goid,
		.req = req,
		.resp_tab = GO_ARG2(ctx),
		.resp = GO_ARG3(ctx),
	};
	// Continue the caller's trace when the request says which it is.
	__u32 zero = 0;
	struct header_scratch *hs = bpf_map_lookup_elem(&header_scratch, &zero);
	if (hs) {
		struct trace_headers th = {};
		find_trace_headers(req, hs, &th);
		if (th.traceparent.len && parse_traceparent(th.traceparent, hs, &in.ids)) {
			in.remote_parent = 1;
			in.tracestate = th.tracestate;
		}
	}
	if (!in.remote_parent)
		take_conn_ctx(&in);
	if (!in.remote_parent)
		random_bytes(in.ids.trace_id, sizeof(in.ids.trace_id));
	random_bytes(in.ids.span_id, sizeof(in.ids.span_id));
	if (bpf_map_update_elem(&server_inflight, &g, &in, BPF_ANY)) {
		count(COUNTER_INFLIGHT_FULL);
		return 0;
	}
	// Client calls made while the handler runs, on this goroutine or on
	// goroutines it starts, become children of this span.
	struct go_trace_ctx tc;
	__builtin_memcpy(tc.trace_id, in.ids.trace_id, sizeof(tc.trace_id));
	__builtin_memcpy(tc.span_id, in.ids.span_id, sizeof(tc.span_id));
	struct go_key key = go_key_of(goid);
	bpf_map_update_elem(&go_ctx, &key, &tc, BPF_ANY);
	return 0;
}

// Sizes of the struct prefixes copied in one read each (set from Go to the
// end of the last field used, so that no read goes past the object).
volatile const __u64 req_read_size;
volatile const __u64 url_read_size;
volatile const __u64 resp_read_size;
volatile const __u64 conn_read_size;

#define SCRATCH_REQ 512
#define SCRATCH_SMALL 256

// Per-CPU copies of the structs a return reads. Every field is then taken
// from the copy: one bpf_probe_read_user per struct instead of one per
// field, which matters because each read of user memory costs about as much
// as the rest of the program.
struct scratch {
	__u8 req[SCRATCH_REQ];
	__u8 url[SCRATCH_SMALL];
	__u8 resp[SCRATCH_SMALL];
	__u8 conn[SCRATCH_SMALL];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} server_scratch SEC(".maps");

// A field of a copied struct. The offset is a load-time constant, which the
// verifier sees as such; the check only keeps a bad offset inside the buffer.
#define FIELD(buf, off, type) \
	(*(type *)((buf) + ((off) <= sizeof(buf) - sizeof(type) ? (off) : 0)))

// Copy the first size bytes of the struct at addr into buf.
#define COPY(buf, size, addr) \
	bpf_probe_read_user((buf), (size) < sizeof(buf) ? (size) : sizeof(buf), (void *)(addr))

static __always_inline void read_conn(struct http_server_event *e, struct scratch *s, __u64 conn)
{
	// A size of zero: the binary lacks what the connection is read with
	// (user space left that part out), and nothing of it must be used.
	if (!conn || !conn_read_size || COPY(s->conn, conn_read_size, conn))
		return;
	if (FIELD(s->conn, off_conn_tls_state, __u64))
		e->info |= HTTP_INFO_TLS;
	struct go_iface rwc = {
		.tab = FIELD(s->conn, off_conn_rwc, __u64),
		.data = FIELD(s->conn, off_conn_rwc + 8, __u64),
	};
	struct conn_addrs both;
	if (!conn_addrs(&both, conn, rwc))
		return;
	__builtin_memcpy(e->local_ip, both.local.ip, sizeof(e->local_ip));
	e->local_ip_len = both.local.ip_len;
	e->local_port = both.local.port;
	e->info |= HTTP_INFO_LOCAL_ADDR;
}

SEC("uprobe/serverHandler_ServeHTTP_ret")
int serve_http_return(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *found = bpf_map_lookup_elem(&server_inflight, &g);

	if (!found) {
		count(COUNTER_NO_ENTRY);
		return 0;
	}
	struct inflight in = *found;
	bpf_map_delete_elem(&server_inflight, &g);
	struct go_key key = go_key_of(in.goid);
	struct go_trace_ctx *tc = bpf_map_lookup_elem(&go_ctx, &key);
	if (tc && span_id_eq(tc->span_id, in.ids.span_id))
		bpf_map_delete_elem(&go_ctx, &key);

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&server_scratch, &zero);
	if (!s)
		return 0;
	if (COPY(s->req, req_read_size, in.req)) {
		count(COUNTER_READ_FAILED);
		return 0;
	}

	struct http_server_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_HTTP_SERVER);
	e->start_ns = in.start_ns;
	e->goid = in.goid;
	e->ids = in.ids;
	e->content_length = FIELD(s->req, off_req_content_length, __s64);
	e->proto_major = FIELD(s->req, off_req_proto_major, __s64);
	e->proto_minor = FIELD(s->req, off_req_proto_minor, __s64);
	e->status = 0;
	e->resp_written = 0;
	e->local_port = 0;
	e->local_ip_len = 0;
	e->info = 0;
	e->truncated = 0;
	__builtin_memset(e->local_ip, 0, sizeof(e->local_ip));
	__builtin_memset(e->pad, 0, sizeof(e->pad));

	if (itab_is(in.resp_tab, response_header_fn) && !COPY(s->resp, resp_read_size, in.resp)) {
		e->status = FIELD(s->resp, off_resp_status, __s64);
		e->resp_written = FIELD(s->resp, off_resp_written, __s64);
		e->info |= HTTP_INFO_RESPONSE_KNOWN;
		read_conn(e, s, FIELD(s->resp, off_resp_conn, __u64));
	}

	struct go_string str;
	str = FIELD(s->req, off_req_method, struct go_string);
	e->method_len = copy_go_string(e->method, sizeof(e->method), str, &e->truncated, HTTP_TRUNC_METHOD);
	str = FIELD(s->req, off_req_host, struct go_string);
	e->host_len = copy_go_string(e->host, sizeof(e->host), str, &e->truncated, HTTP_TRUNC_HOST);
	str = FIELD(s->req, off_req_remote_addr, struct go_string);
	e->remote_len = copy_go_string(e->remote, sizeof(e->remote), str, &e->truncated, HTTP_TRUNC_REMOTE);
	e->pattern_len = 0;
	if (has_pattern) {
		str = FIELD(s->req, off_req_pattern, struct go_string);
		e->pattern_len = copy_go_string(e->pattern, sizeof(e->pattern), str, &e->truncated, HTTP_TRUNC_PATTERN);
	}
	e->tracestate_len = 0;
	if (in.remote_parent) {
		e->info |= HTTP_INFO_REMOTE_PARENT;
		if (in.tracestate.len > HTTP_TRACESTATE_MAX) {
			e->info |= HTTP_INFO_TRACESTATE_DROPPED;
		} else {
			__u8 ignored = 0;
			e->tracestate_len = copy_go_string(e->tracestate, sizeof(e->tracestate), in.tracestate, &ignored, 0);
		}
	}
	e->path_len = 0;
	e->query_len = 0;
	__u64 url = FIELD(s->req, off_req_url, __u64);
	if (url && !COPY(s->url, url_read_size, url)) {
		str = FIELD(s->url, off_url_path, struct go_string);
		e->path_len = copy_go_string(e->path, sizeof(e->path), str, &e->truncated, HTTP_TRUNC_PATH);
		str = FIELD(s->url, off_url_raw_query, struct go_string);
		e->query_len = copy_go_string(e->query, sizeof(e->query), str, &e->truncated, HTTP_TRUNC_QUERY);
	}
	if (e->truncated)
		e->hdr.flags |= EVENT_FLAG_TRUNCATED;
	if (!e->method_len)
		count(COUNTER_READ_FAILED);

	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}
