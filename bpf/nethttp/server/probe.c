// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Go net/http server: one span per request served.
//
// A span starts where the request's handler is called and ends once the
// response has left, each observed at a function's entry, on the stack-check
// jump the kernel emulates (gobin.EntryOffset): no probe sits on a RET,
// which the kernel single-steps.
//
//   func (sh serverHandler) ServeHTTP(rw ResponseWriter, req *Request)
//     start, every protocol. RAX = sh.srv, RBX/RCX = rw (itab, data),
//     RDI = req. The request is parsed, so its traceparent is read here,
//     before the handler can start a child span.
//
// Ends, on the same goroutine as the start (the in-flight table is keyed by
// its g):
//
//   func (cr *connReader) abortPendingRead()
//     HTTP/1.x. finishRequest calls it right after it flushed the response
//     to the socket, and conn.serve's deferred function calls it when the
//     handler panicked; response.handlerDone tells the two apart.
//   func (w checkConnErrorWriter) Write(p []byte) (n int, err error)
//     HTTP/1.x, not an end: every flush of the connection's buffered
//     writer to the socket. The last one before abortPendingRead is when
//     the response's last bytes went to the kernel, and the span ends
//     then: a goroutine preempted after its write reaches abortPendingRead
//     late, after its caller had the response (milliseconds on a loaded
//     machine).
//   func (c *conn) hijackLocked() (net.Conn, *bufio.ReadWriter, error)
//     HTTP/1.x, the handler hijacks the connection (it calls
//     abortPendingRead too, which must not end the span then).
//   func (cr *connReader) releaseConn()
//     HTTP/1.x, after ServeHTTP returned on a hijacked connection: the span
//     covers the handler, however long it used the connection.
//   func (w *responseWriter) handlerDone()
//     HTTP/2, the bundled server (net/http.(*http2responseWriter), Go <=
//     1.26; net/http/internal/http2.(*responseWriter), Go 1.27) and
//     golang.org/x/net/http2's: called once the handler returned, before
//     the final flush, with the stream's status and byte count at hand.
//     RAX = w, which is the ResponseWriter's data word.
//
// The start only remembers the time, the trace context and the pointers;
// everything else is read at the end, when the handler has set the status
// and ServeMux has set Request.Pattern.

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
volatile const __u64 off_req_tls;
volatile const __u8 has_pattern;
volatile const __u64 off_url_path;
volatile const __u64 off_url_raw_query;
// HTTP/1.x: net/http.response and net/http.conn.
volatile const __u64 off_resp_conn;
volatile const __u64 off_resp_status;
volatile const __u64 off_resp_written;
volatile const __u64 off_resp_handler_done;
volatile const __u64 off_conn_rwc;
// HTTP/2: responseWriter.rws -> responseWriterState (status, wroteBytes,
// conn -> serverConn.conn), for the standard library's server (h2_*) and
// golang.org/x/net/http2's (xh2_*); has_* is 1 when the binary gives them.
volatile const __u8 has_h2;
volatile const __u64 off_h2_rws;
volatile const __u64 off_h2_status;
volatile const __u64 off_h2_wrote;
volatile const __u64 off_h2_conn;
volatile const __u64 off_h2_sc_conn;
volatile const __u8 has_xh2;
volatile const __u64 off_xh2_rws;
volatile const __u64 off_xh2_status;
volatile const __u64 off_xh2_wrote;
volatile const __u64 off_xh2_conn;
volatile const __u64 off_xh2_sc_conn;
// crypto/tls.Conn.conn, the connection under TLS.
volatile const __u64 off_tlsconn_conn;

// Concrete types behind interfaces are recognised by their itab's first
// method, whose address pclntab gives even in a stripped binary: an
// interface's methods are sorted by name, so fun[0] of a ResponseWriter itab
// is Header and fun[0] of a net.Conn itab is Close. These are the addresses
// of net/http.(*response).Header, crypto/tls.(*Conn).Close and
// net.(*TCPConn).Close (tcpconn_close_fn, in common/netconn.h); zero
// disables the reads that depend on them rather than guessing.
volatile const __u64 response_header_fn;
volatile const __u64 tlsconn_close_fn;

struct inflight {
	__u64 start_ns;
	__u64 goid;
	struct span_ids ids;
	struct go_string tracestate; // in the request's Header, alive until the end
	__u8 remote_parent;
	__u8 hijacked; // hijackLocked ran: the span ends at releaseConn
	__u8 pad[6];
	__u64 req;
	__u64 resp_tab;
	__u64 resp;
	__u64 wrote_ns; // HTTP/1.x: when the last write to the socket began
};

// Requests being served, keyed by the goroutine's g pointer. An end that
// never comes (an HTTP/2 handler that panics, a hijacked connection whose
// handler panics, a protocol whose end is not probed) leaves its entry
// behind: the next request served on a reused g replaces it, and the table
// is an LRU, so such entries age out instead of filling it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight);
} server_inflight SEC(".maps");

// Addresses of a connection, cached by the net/http.conn pointer and the
// net.Conn behind it: they are the same for every request of a keep-alive
// connection, and finding them takes several dependent reads. Both objects
// are freed when the connection closes and a later connection may be
// allocated at the same two addresses (a gateway that opens and closes many
// connections does this within seconds), so an entry also holds the
// goroutine that serves its connection: net/http serves an HTTP/1.x
// connection on one goroutine, and goroutine IDs are never reused. HTTP/2
// handlers run on a goroutine per stream: their addresses are read each time.
struct conn_key {
	__u64 conn;
	__u64 rwc;
};

struct conn_addrs {
	struct tcp_addr local;
	struct tcp_addr remote;
};

struct cached_conn_addrs {
	struct conn_addrs addrs;
	__u64 owner; // goid of the goroutine serving the connection
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct conn_key);
	__type(value, struct cached_conn_addrs);
} server_conn_addrs SEC(".maps");

// The addresses of server connection conn whose net.Conn is rwc: a
// *net.TCPConn, or a *crypto/tls.Conn over one. owner is the goid of the
// goroutine that serves the connection, or 0 when the caller does not run
// on it (nothing is cached then).
static __always_inline bool conn_addrs(struct conn_addrs *out, __u64 conn, struct go_iface rwc, __u64 owner)
{
	struct conn_key key = {.conn = conn, .rwc = rwc.data};
	if (owner) {
		struct cached_conn_addrs *cached = bpf_map_lookup_elem(&server_conn_addrs, &key);
		if (cached && cached->owner == owner) {
			*out = cached->addrs;
			return true;
		}
	}
	if (itab_is(rwc.tab, tlsconn_close_fn) &&
	    bpf_probe_read_user(&rwc, sizeof(rwc), (void *)(rwc.data + off_tlsconn_conn)))
		return false;
	if (!read_conn_addrs(rwc, &out->local, &out->remote))
		return false;
	if (owner) {
		struct cached_conn_addrs fresh = {.addrs = *out, .owner = owner};
		bpf_map_update_elem(&server_conn_addrs, &key, &fresh, BPF_ANY);
	}
	return true;
}

// A traced client on this host that sent this request left its span's
// context under the connection's addresses (see conn_ctx): continue it.
// When the request also carries a traceparent of the same trace, the
// connection's context wins: that header was forwarded by the client (a
// proxy passing its own caller's on), and the client span that sent it on
// this very connection is the true parent. A header of another trace was
// set by the application itself and is kept.
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
	// HTTP/1.x only (the itab test above): this is the connection's goroutine.
	if (!conn_addrs(&both, conn, rwc, in->goid))
		return;
	struct conn_tuple t;
	make_tuple(&t, &both.remote, &both.local);
	struct conn_trace_ctx *tc = bpf_map_lookup_elem(&conn_ctx, &t);
	if (!tc)
		return;
	if (in->start_ns - tc->armed_ns < CONN_CTX_MAX_AGE_NS &&
	    (!in->remote_parent || trace_id_eq(in->ids.trace_id, tc->ctx.trace_id))) {
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
	// has another goid, so a stale entry left by a request whose end never
	// came is replaced, not mistaken for this call.
	if (cur && cur->req == req && cur->goid == goid)
		return 0;

	struct inflight in = {
		.start_ns = bpf_ktime_get_ns(),
		.goid = goid,
		.req = req,
		.resp_tab = GO_ARG2(ctx),
		.resp = GO_ARG3(ctx),
	};
	struct go_trace_ctx tc = {};
	// Continue the caller's trace when the request says which it is.
	__u32 zero = 0;
	struct header_scratch *hs = bpf_map_lookup_elem(&header_scratch, &zero);
	if (hs) {
		struct trace_headers th = {};
		find_trace_headers(req, hs, &th);
		if (th.traceparent.len && parse_traceparent(th.traceparent, hs, &in.ids)) {
			in.remote_parent = 1;
			in.tracestate = th.tracestate;
			// What a request this handler forwards would carry.
			__builtin_memcpy(tc.received_parent, in.ids.parent_id, sizeof(tc.received_parent));
		}
	}
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
volatile const __u64 h2_read_size;
volatile const __u64 xh2_read_size;

#define SCRATCH_REQ 512
#define SCRATCH_SMALL 256
#define SCRATCH_RWS 512

// Per-CPU copies of the structs an end reads. Every field is then taken
// from the copy: one bpf_probe_read_user per struct instead of one per
// field, which matters because each read of user memory costs about as much
// as the rest of the program.
struct scratch {
	__u8 req[SCRATCH_REQ];
	__u8 url[SCRATCH_SMALL];
	__u8 resp[SCRATCH_RWS]; // net/http.response, or an HTTP/2 responseWriterState
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

// What the end of a request found out about its response.
struct outcome {
	__s64 status;
	__s64 written;
	__u64 conn; // net/http.conn or the HTTP/2 serverConn: the cache key of the addresses
	struct go_iface rwc; // its net.Conn
	__u8 info;
	__u8 pad[7];
};

// How a request ended.
enum end_kind {
	END_H1,       // abortPendingRead: finished, or the handler panicked
	END_HIJACKED, // releaseConn after a hijack
	END_H2,       // the standard library's HTTP/2 handlerDone
	END_XH2,      // golang.org/x/net/http2's handlerDone
};

// HTTP/1.x: the *response's status, bytes and connection.
static __always_inline void h1_outcome(struct outcome *o, struct scratch *s, const struct inflight *in, enum end_kind how)
{
	// A size of zero: the binary lacks what the response is read with
	// (user space left that part out), and nothing of it must be used.
	if (!resp_read_size || !itab_is(in->resp_tab, response_header_fn) || COPY(s->resp, resp_read_size, in->resp))
		return;
	o->status = FIELD(s->resp, off_resp_status, __s64);
	o->written = FIELD(s->resp, off_resp_written, __s64);
	o->info |= HTTP_INFO_RESPONSE_KNOWN;
	if (how == END_HIJACKED)
		o->info |= HTTP_INFO_HIJACKED;
	else if (!FIELD(s->resp, off_resp_handler_done, __u8))
		// finishRequest sets it first thing: at abortPendingRead without
		// it, the handler did not return, it panicked.
		o->info |= HTTP_INFO_PANICKED;
	__u64 conn = FIELD(s->resp, off_resp_conn, __u64);
	if (conn && !bpf_probe_read_user(&o->rwc, sizeof(o->rwc), (void *)(conn + off_conn_rwc)))
		o->conn = conn;
}

// HTTP/2: the stream's status, bytes and connection, from the
// responseWriterState of the writer at w.
static __always_inline void h2_outcome(struct outcome *o, struct scratch *s, __u64 w, __u64 size, __u64 off_rws,
				       __u64 off_status, __u64 off_wrote, __u64 off_conn, __u64 off_sc_conn)
{
	__u64 rws = read_u64(w + off_rws);
	if (!rws || !size || COPY(s->resp, size, rws))
		return;
	o->status = FIELD(s->resp, off_status, __s64);
	o->written = FIELD(s->resp, off_wrote, __s64);
	o->info |= HTTP_INFO_RESPONSE_KNOWN;
	__u64 sc = FIELD(s->resp, off_conn, __u64);
	if (sc && !bpf_probe_read_user(&o->rwc, sizeof(o->rwc), (void *)(sc + off_sc_conn)))
		o->conn = sc;
}

// End the request in flight on this goroutine and send its record.
static __always_inline void end_request(__u64 g, enum end_kind how)
{
	struct inflight *found = bpf_map_lookup_elem(&server_inflight, &g);
	if (!found)
		return;
	struct inflight in = *found;
	bpf_map_delete_elem(&server_inflight, &g);
	struct go_key key = go_key_of(in.goid);
	struct go_trace_ctx *tc = bpf_map_lookup_elem(&go_ctx, &key);
	if (tc && span_id_eq(tc->span_id, in.ids.span_id))
		bpf_map_delete_elem(&go_ctx, &key);

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&server_scratch, &zero);
	if (!s)
		return;
	struct outcome o = {};
	switch (how) {
	case END_H1:
	case END_HIJACKED:
		h1_outcome(&o, s, &in, how);
		break;
	case END_H2:
		if (has_h2)
			h2_outcome(&o, s, in.resp, h2_read_size, off_h2_rws, off_h2_status, off_h2_wrote, off_h2_conn, off_h2_sc_conn);
		break;
	case END_XH2:
		if (has_xh2)
			h2_outcome(&o, s, in.resp, xh2_read_size, off_xh2_rws, off_xh2_status, off_xh2_wrote, off_xh2_conn, off_xh2_sc_conn);
		break;
	}
	struct conn_addrs both;
	// An HTTP/1.x request ends on its connection's goroutine; an HTTP/2
	// one on its stream's.
	__u64 owner = (how == END_H1 || how == END_HIJACKED) ? in.goid : 0;
	bool local = o.conn && conn_addrs(&both, o.conn, o.rwc, owner);

	if (COPY(s->req, req_read_size, in.req)) {
		count(COUNTER_READ_FAILED);
		return;
	}
	struct http_server_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_HTTP_SERVER);
	// A response written ends when its last write began (see
	// serve_http_write); a panic when the connection is dropped.
	if (how == END_H1 && in.wrote_ns && !(o.info & HTTP_INFO_PANICKED))
		e->hdr.ts_ns = in.wrote_ns;
	e->start_ns = in.start_ns;
	e->goid = in.goid;
	e->ids = in.ids;
	e->content_length = FIELD(s->req, off_req_content_length, __s64);
	e->proto_major = FIELD(s->req, off_req_proto_major, __s64);
	e->proto_minor = FIELD(s->req, off_req_proto_minor, __s64);
	e->status = o.status;
	e->resp_written = o.written;
	e->info = o.info;
	e->local_port = 0;
	e->local_ip_len = 0;
	e->truncated = 0;
	__builtin_memset(e->local_ip, 0, sizeof(e->local_ip));
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	if (local) {
		__builtin_memcpy(e->local_ip, both.local.ip, sizeof(e->local_ip));
		e->local_ip_len = both.local.ip_len;
		e->local_port = both.local.port;
		e->info |= HTTP_INFO_LOCAL_ADDR;
	}
	// Request.TLS is set for every protocol served over TLS.
	if (FIELD(s->req, off_req_tls, __u64))
		e->info |= HTTP_INFO_TLS;

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
}

// The request in flight on this goroutine, when it is still the one this
// goroutine serves: a g struct reused by another goroutine has another goid.
static __always_inline struct inflight *current(__u64 g)
{
	struct inflight *in = bpf_map_lookup_elem(&server_inflight, &g);
	if (!in || read_u64(g + off_g_goid) != in->goid)
		return 0;
	return in;
}

// func (cr *connReader) abortPendingRead()
//
// HTTP/1.x: the response was written (or the handler panicked). Also runs
// inside hijackLocked, where the span goes on, and for a request answered
// without calling the handler (417), where there is nothing in flight. A
// second hit after morestack finds the entry gone.
SEC("uprobe/connReader_abortPendingRead")
int serve_http_end(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = current(g);
	if (!in || in->hijacked)
		return 0;
	end_request(g, END_H1);
	return 0;
}

// func (w checkConnErrorWriter) Write(p []byte) (n int, err error)
//
// HTTP/1.x: the connection's buffered writer flushes to the socket (RAX =
// w.c), on the goroutine serving the request: remember when.
SEC("uprobe/checkConnErrorWriter_Write")
int serve_http_write(struct pt_regs *ctx)
{
	struct inflight *in = current(GO_G(ctx));
	if (in)
		in->wrote_ns = bpf_ktime_get_ns();
	return 0;
}

// func (c *conn) hijackLocked() (rwc net.Conn, buf *bufio.ReadWriter, err error)
//
// The handler takes the connection over (RAX = c): its span ends when it
// returns, at releaseConn.
SEC("uprobe/conn_hijackLocked")
int serve_http_hijack(struct pt_regs *ctx)
{
	struct inflight *in = current(GO_G(ctx));
	if (in)
		in->hijacked = 1;
	return 0;
}

// func (cr *connReader) releaseConn()
//
// Called once by conn.serve after ServeHTTP returned on a hijacked
// connection.
SEC("uprobe/connReader_releaseConn")
int serve_http_end_hijacked(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = current(g);
	if (!in || !in->hijacked)
		return 0;
	end_request(g, END_HIJACKED);
	return 0;
}

// func (w *responseWriter) handlerDone(), RAX = w: the standard library's
// HTTP/2 server. The writer handed to ServeHTTP is this very w (Go 1.27
// wraps it in a one-pointer struct, which an interface holds as the
// pointer), so the request in flight is recognised by it.
SEC("uprobe/http2_responseWriter_handlerDone")
int serve_h2_end(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = bpf_map_lookup_elem(&server_inflight, &g);
	if (!in || in->resp != GO_ARG1(ctx))
		return 0;
	end_request(g, END_H2);
	return 0;
}

// The same for golang.org/x/net/http2's server.
SEC("uprobe/xnet_http2_responseWriter_handlerDone")
int serve_xh2_end(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = bpf_map_lookup_elem(&server_inflight, &g);
	if (!in || in->resp != GO_ARG1(ctx))
		return 0;
	end_request(g, END_XH2);
	return 0;
}
