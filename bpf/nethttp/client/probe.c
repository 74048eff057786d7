// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Go net/http client: one CLIENT span per round trip.
//
// Probed function (Go >= 1.17, amd64 register ABI):
//
//   func (t *Transport) roundTrip(req *Request) (_ *Response, err error)
//
//   entry:  RAX = t, RBX = req
//
// Every request an http.Client sends, redirects included, passes through
// it once. The span's parent is the span active on the calling goroutine or
// on the goroutine that started it (see go_ctx in common/maps.h).
//
// It ends, on the same goroutine, at the entry of the closure roundTrip
// defers once it has validated the request,
//
//   defer func() { if err != nil { cancel(err) } }()   // roundTrip.func1
//
// which every later return of roundTrip calls (RDX = the closure, which
// holds &err): the error through the closure, the *Response from the stack
// slot roundTrip keeps it in next to err. Where that slot is depends on the
// build; user space finds it in roundTrip's code (gobin.ResultSlots), and
// when it cannot, the span ends on roundTrip's RET instructions instead
// (round_trip_return: RAX = *Response, RBX/RCX = err). HTTPS requests that
// HTTP/2 serves on a connection it already has return before the defer,
// through the alternate round tripper: they end on its RETs.

#include "common/kernel.h"
#include "common/goabi.h"
#include "common/maps.h"
#include "common/netconn.h"
#include "common/traceparent_line.h"
#include "nethttp/traceparent.h"
#include "nethttp/client/record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The record and the enums user space reads, in BTF for bpf2go -type
// (probes/nethttp/client/gen.go); never used.
struct http_client_event *unused_http_client_event __attribute__((unused));
enum http_client_record *unused_http_client_record __attribute__((unused));
enum http_client_info *unused_http_client_info __attribute__((unused));
struct http_client_body *unused_http_client_body __attribute__((unused));
enum http_client_body_record *unused_http_client_body_record __attribute__((unused));
enum http_client_body_flags *unused_http_client_body_flags __attribute__((unused));
struct http_client_h2_stream *unused_http_client_h2_stream __attribute__((unused));
enum http_client_h2_stream_record *unused_http_client_h2_stream_record __attribute__((unused));

volatile const __u64 off_g_goid;
volatile const __u64 off_g_parent_goid;
volatile const __u64 off_req_method;
volatile const __u64 off_req_url;
volatile const __u64 off_req_content_length;
volatile const __u64 off_url_scheme;
volatile const __u64 off_url_host;
volatile const __u64 off_url_path;
volatile const __u64 off_url_raw_query;
volatile const __u64 off_resp_status_code;
volatile const __u64 off_resp_request;
volatile const __u64 off_pconn_conn;
// roundTrip's frame while its deferred closure runs: the offsets, from its
// stack pointer, of the slots of its results (*Response, err), and where
// the closure keeps &err.
volatile const __s64 off_rt_resp;
volatile const __s64 off_rt_err;
volatile const __u64 rt_closure_err;
// Run-time address of errors.(*errorString).Error, fun[0] of the itab of an
// error made by errors.New (net/http.ErrSkipAltProtocol's).
volatile const __u64 errorstring_error_fn;

// Outgoing context through bpf_probe_write_user (user space sets it only
// where the kernel allows that helper; see probes/inject).
volatile const bool inject_write_user;
volatile const __u64 off_bufio_buf;
volatile const __u64 off_bufio_n;
// Run-time address of bufio.(*Writer).Write: an io.Writer holds a
// *bufio.Writer exactly when its itab's only method is that one (itab_is).
volatile const __u64 bufio_writer_write_fn;

// Model calls' bodies (the genai part): on when user space found the
// persistConn read site in this binary; where (*persistConn).Read keeps its
// arguments p (its pointer) and pc while pc.conn.Read(p) runs.
volatile const bool capture_bodies;
// Run-time address of crypto/tls.(*Conn).Close, fun[0] of the net.Conn
// itab of a *tls.Conn: such a connection's bytes are copied where
// crypto/tls.(*Conn).Write takes them (0: not in the binary).
volatile const __u64 tlsconn_close_fn;
volatile const __s64 off_pconn_read_p;
volatile const __s64 off_pconn_read_pc;

// Model calls over HTTP/2 (the h2 part): on when user space found the
// stream's write-headers entry and crypto/tls.(*Conn).Read's copy site in
// this binary. The request's URL in what encodeAndWriteHeaders gets (a
// *net/http.Request in Go 1.26, a *ClientRequest since 1.27), the stream's
// ID and connection, the connection's net.Conn, and where
// crypto/tls.(*Conn).Read keeps its receiver.
volatile const bool capture_h2;
volatile const __u64 off_h2req_url;
volatile const __u64 off_cs_id;
volatile const __u64 off_cs_cc;
volatile const __u64 off_cc_tconn;
volatile const __s64 off_tls_read_conn;

// Sizes of the struct prefixes copied in one read each.
volatile const __u64 req_read_size;
volatile const __u64 url_read_size;
volatile const __u64 resp_read_size;

struct inflight {
	__u64 start_ns;
	__u64 goid;
	__u64 req;
	struct span_ids ids;
	// The traceparent parent id the parent server span received (zero for
	// none): a request carrying it forwards that header (common/maps.h).
	__u8 received_parent[8];
	// Set by persist_conn_round_trip_enter; ip_len stays 0 when the
	// request did not go out on a plain TCP connection.
	struct tcp_addr peer;
	// The request is a model call whose bytes are copied (body_watch,
	// or h2_watch once HTTP/2 gives it a stream).
	__u8 genai;
	// The request calls a model API (is_genai_request), computed once.
	__u8 model;
	// Its URL is in genai_url, for an HTTP/2 stream to find it by.
	__u8 h2_url;
	__u8 pad[5];
};

// Round trips in progress, by goroutine (g pointer).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight);
} client_inflight SEC(".maps");

// A request's header map, in a process.
struct header_key {
	__u32 tgid;
	__u32 pad;
	__u64 header;
};

// Context to write into a request when its headers are written, by the
// request's header map: set at persistConn.roundTrip on the caller's
// goroutine, taken at Header.writeSubset on the connection's write loop
// goroutine, which has no other link to the round trip.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct header_key);
	__type(value, struct conn_trace_ctx);
} header_ctx SEC(".maps");

#define SCRATCH_REQ 512
#define SCRATCH_SMALL 256

struct scratch {
	__u8 req[SCRATCH_REQ];
	__u8 url[SCRATCH_SMALL];
	__u8 resp[SCRATCH_SMALL];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} client_scratch SEC(".maps");

#define FIELD(buf, off, type) \
	(*(type *)((buf) + ((off) <= sizeof(buf) - sizeof(type) ? (off) : 0)))
#define COPY(buf, size, addr) \
	bpf_probe_read_user((buf), (size) < sizeof(buf) ? (size) : sizeof(buf), (void *)(addr))

// Model calls (issue 13). A round trip that POSTs to a model API's path
// (the path's last two segments, or its last, in genai_suffixes, which user
// space fills from correlate/protocols/genai.DefaultSuffixes) has its
// connection watched while it uses it: every write of the request and read
// of the response on that persistConn is copied (within budgets) to user
// space, which reads the call's model, tokens and stream out of them and
// ends the span when the response's body ends. Other connections pay one
// hash lookup per write and read of an HTTP/1.x client connection, on an
// emulated instruction.

#define GENAI_SUFFIX_MAX 32
// Bytes copied of a request (its head and body's start), and of a
// response, before only each write's or read's last bytes are.
#define GENAI_REQ_BUDGET (16 << 10)
#define GENAI_RESP_BUDGET (256 << 10)

struct genai_suffix {
	char s[GENAI_SUFFIX_MAX];
};

// Recognised path endings (value: the API, as user space numbers it).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct genai_suffix);
	__type(value, __u8);
} genai_suffixes SEC(".maps");

struct watch_key {
	__u32 tgid;
	__u32 pad;
	__u64 pc;
};

struct body_watch {
	__u8 span_id[8];
	__u64 written;
	__u64 read;
	// pc.conn is a *tls.Conn: the request's bytes are copied at its
	// Write, which every write of the connection goes through, the
	// bodies io.Copy writes past persistConnWriter included.
	__u8 tls;
	__u8 pad[7];
};

// Connections a model call is using, by persistConn.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct watch_key);
	__type(value, struct body_watch);
} body_watch SEC(".maps");

// The same connections by their *net.TCPConn (pc.conn's data word), for
// the writes that bypass persistConnWriter.Write: a body longer than the
// connection's write buffer goes through persistConnWriter.ReadFrom,
// io.Copy and the TCPConn's generic ReadFrom, which writes it in 32 KiB
// pieces through tcpConnWithoutReadFrom.Write.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct watch_key);
	__type(value, __u64);
} body_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http_client_body);
} body_scratch SEC(".maps");

// Lengths of the suffixes in genai_suffixes: bit L set when one is L bytes
// long (key 0; user space fills it with the map).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} genai_suffix_lens SEC(".maps");

// Whether req (a *Request) is a call to a model API: POST, and a path
// whose end, from just after one of its slashes, is in genai_suffixes.
// Each suffix length is tried with a constant-size read (the loop is
// unrolled), which keeps the verifier's work flat.
static __always_inline bool is_genai_request(__u64 req)
{
	struct go_string m = {};
	char mb[4];
	if (bpf_probe_read_user(&m, sizeof(m), (void *)(req + off_req_method)) || m.len != 4 ||
	    bpf_probe_read_user(mb, sizeof(mb), (void *)m.ptr) || mb[0] != 'P' || mb[1] != 'O' || mb[2] != 'S' ||
	    mb[3] != 'T')
		return false;
	__u32 zero = 0;
	__u32 *lens = bpf_map_lookup_elem(&genai_suffix_lens, &zero);
	if (!lens || !*lens)
		return false;
	__u32 mask = *lens;
	__u64 url = read_u64(req + off_req_url);
	struct go_string path = {};
	if (!url || bpf_probe_read_user(&path, sizeof(path), (void *)(url + off_url_path)) || path.len <= 1)
		return false;
	char c = 0;
	if (bpf_probe_read_user(&c, 1, (void *)(path.ptr + path.len - 1)))
		return false;
	__u64 end = path.ptr + path.len - (c == '/' ? 1 : 0);
	__s64 plen = path.len - (c == '/' ? 1 : 0);
#pragma unroll
	for (int l = 1; l < GENAI_SUFFIX_MAX; l++) {
		if (!(mask & (1u << l)) || l >= plen)
			continue;
		if (bpf_probe_read_user(&c, 1, (void *)(end - l - 1)) || c != '/')
			continue;
		struct genai_suffix key = {};
		if (bpf_probe_read_user(key.s, l, (void *)(end - l)))
			continue;
		if (bpf_map_lookup_elem(&genai_suffixes, &key))
			return true;
	}
	return false;
}

// Watch (or stop watching) the connection pc a round trip is about to use.
static __always_inline void watch_bodies(struct inflight *in, __u64 pc)
{
	struct watch_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .pc = pc};
	struct go_iface conn = {};
	bpf_probe_read_user(&conn, sizeof(conn), (void *)(pc + off_pconn_conn));
	struct watch_key ck = {.tgid = k.tgid, .pc = conn.data};
	if (!in->model) {
		// A keep-alive connection a model call used before.
		if (bpf_map_delete_elem(&body_watch, &k) == 0)
			bpf_map_delete_elem(&body_conn, &ck);
		return;
	}
	struct body_watch w = {.tls = itab_is(conn.tab, tlsconn_close_fn)};
	__builtin_memcpy(w.span_id, in->ids.span_id, sizeof(w.span_id));
	if (bpf_map_update_elem(&body_watch, &k, &w, BPF_ANY)) {
		count(COUNTER_INFLIGHT_FULL);
		return;
	}
	if (ck.pc)
		bpf_map_update_elem(&body_conn, &ck, &pc, BPF_ANY);
	in->genai = 1;
}

// Send len bytes at src (the whole of a write or read of total bytes, its
// first bytes, or with HTTP_BODY_TAIL its last) as one record.
static __always_inline void send_body(struct http_client_body *e, __u64 src, __u32 len, __u8 flags)
{
	len &= (HTTP_BODY_MAX * 2 - 1);
	if (len > HTTP_BODY_MAX)
		len = HTTP_BODY_MAX;
	if (len && bpf_probe_read_user(e->data, len, (void *)src)) {
		count(COUNTER_READ_FAILED);
		return;
	}
	e->len = len;
	e->flags = flags;
	e->hdr.ts_ns = bpf_ktime_get_ns();
	if (bpf_ringbuf_output(&events, e, offsetof(struct http_client_body, data) + len, wakeup_flags()))
		count(COUNTER_RINGBUF_FULL);
}

// Copy a write or read of a watched connection: its first bytes while the
// direction's budget lasts, and its last bytes when those did not hold it.
// tls says the write is tls.(*Conn).Write's, which is where a watched TLS
// connection's writes are copied (and only those).
static __always_inline void copy_body(__u64 pc, __u64 ptr, __s64 total, bool write, bool tls)
{
	struct watch_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .pc = pc};
	struct body_watch *w = bpf_map_lookup_elem(&body_watch, &k);
	if (!w || (write && w->tls != tls))
		return;
	__u32 zero = 0;
	struct http_client_body *e = bpf_map_lookup_elem(&body_scratch, &zero);
	if (!e)
		return;
	__u64 *done = write ? &w->written : &w->read;
	__u64 budget = write ? GENAI_REQ_BUDGET : GENAI_RESP_BUDGET;
	fill_header(&e->hdr, EVENT_HTTP_CLIENT_BODY);
	e->conn = pc;
	__builtin_memcpy(e->span_id, w->span_id, sizeof(e->span_id));
	e->offset = *done;
	e->pad = 0;
	__u8 dir = write ? HTTP_BODY_WRITE : 0;
	if (total <= 0) {
		if (write)
			return;
		e->total = 0;
		send_body(e, 0, 0, dir | HTTP_BODY_EOF);
		if (!write)
			bpf_map_delete_elem(&body_watch, &k);
		return;
	}
	e->total = total;
	__u64 head = *done < budget ? budget - *done : 0;
	if (head > (__u64)total)
		head = total;
	if (head > HTTP_BODY_MAX)
		head = HTTP_BODY_MAX;
	*done += total;
	if (head)
		send_body(e, ptr, head, dir);
	if (head == (__u64)total)
		return;
	count(COUNTER_GENAI_UNCOPIED);
	__u64 tail = total - head;
	if (tail > HTTP_BODY_TAIL_MAX)
		tail = HTTP_BODY_TAIL_MAX;
	send_body(e, ptr + total - tail, tail, dir | HTTP_BODY_TAIL);
}

// Model calls over HTTP/2 (Go's HTTPS default). Net/http hands such a
// request to its HTTP/2 transport, which never reaches persistConn: the
// round trip's entry keeps the request's URL (genai_url), which the
// stream's request (a shallow copy of the *Request, or since Go 1.27 a
// *ClientRequest) shares; where the stream writes its headers, by then
// holding its ID, the URL finds the span, the connection's *tls.Conn is
// watched (h2_watch) and a stream record tells user space which stream of
// that connection is the call. Every write (crypto/tls.(*Conn).Write) and
// read (the copy inside crypto/tls.(*Conn).Read) of a watched connection
// is copied; user space follows its frames (correlate/protocols/h2).

struct url_key {
	__u32 tgid;
	__u32 pad;
	__u64 url;
};

// Model calls in progress by their request's *url.URL.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct url_key);
	__type(value, struct span_ids);
} genai_url SEC(".maps");

struct h2_watch {
	// Bytes of each direction since the connection was first watched.
	__u64 written;
	__u64 read;
	// Bytes of each direction since its last model call's stream began,
	// against the copy budgets.
	__u64 wspent;
	__u64 rspent;
};

// HTTP/2 connections (*tls.Conn) a model call used, by process.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct watch_key);
	__type(value, struct h2_watch);
} h2_watch SEC(".maps");

// Keep the URL of the round trip in (a model call) for its HTTP/2 stream.
static __always_inline void remember_url(struct inflight *in)
{
	struct url_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .url = read_u64(in->req + off_req_url)};
	if (!k.url || bpf_map_update_elem(&genai_url, &k, &in->ids, BPF_ANY))
		return;
	in->h2_url = 1;
	in->genai = 1;
}

// Copy a write or read of a watched HTTP/2 connection: its first bytes
// while the direction's budget since the last model call began lasts, at
// least a frame header's worth after that, and its last bytes when those
// did not hold it all.
static __always_inline void copy_h2(__u64 conn, __u64 ptr, __s64 total, bool write)
{
	struct watch_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .pc = conn};
	struct h2_watch *w = bpf_map_lookup_elem(&h2_watch, &k);
	if (!w || total <= 0)
		return;
	__u32 zero = 0;
	struct http_client_body *e = bpf_map_lookup_elem(&body_scratch, &zero);
	if (!e)
		return;
	__u64 *done = write ? &w->written : &w->read;
	__u64 *spent = write ? &w->wspent : &w->rspent;
	__u64 budget = write ? GENAI_REQ_BUDGET : GENAI_RESP_BUDGET;
	fill_header(&e->hdr, EVENT_HTTP_CLIENT_BODY);
	e->conn = conn;
	__builtin_memset(e->span_id, 0, sizeof(e->span_id));
	e->offset = *done;
	e->total = total;
	e->pad = 0;
	__u8 flags = HTTP_BODY_H2 | (write ? HTTP_BODY_WRITE : 0);
	__u64 head = *spent < budget ? budget - *spent : 0;
	if (head < HTTP_BODY_H2_MIN)
		head = HTTP_BODY_H2_MIN;
	if (head > (__u64)total)
		head = total;
	if (head > HTTP_BODY_MAX)
		head = HTTP_BODY_MAX;
	*done += total;
	*spent += total;
	send_body(e, ptr, head, flags);
	if (head == (__u64)total)
		return;
	count(COUNTER_GENAI_UNCOPIED);
	__u64 tail = total - head;
	if (tail > HTTP_BODY_TAIL_MAX)
		tail = HTTP_BODY_TAIL_MAX;
	send_body(e, ptr + total - tail, tail, flags | HTTP_BODY_TAIL);
}

// func (cs *http2clientStream) encodeAndWriteHeaders(req *Request) error
// (Go 1.26; since 1.27 net/http/internal/http2.(*clientStream), req a
// *ClientRequest)
//
// Entry (emulated): RAX = cs, RBX = req. Runs on the goroutine that writes
// the request, once cs has its stream ID (addStreamLocked) and before any
// byte of the request is written.
SEC("uprobe/http2clientStream_encodeAndWriteHeaders")
int h2_write_headers(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct url_key uk = {.tgid = tgid, .url = read_u64(GO_ARG2(ctx) + off_h2req_url)};
	if (!uk.url)
		return 0;
	struct span_ids *ids = bpf_map_lookup_elem(&genai_url, &uk);
	if (!ids)
		return 0;
	__u64 cs = GO_ARG1(ctx);
	__u64 cc = read_u64(cs + off_cs_cc);
	__u32 id = 0;
	struct go_iface tc = {};
	if (!cc || bpf_probe_read_user(&id, sizeof(id), (void *)(cs + off_cs_id)) ||
	    bpf_probe_read_user(&tc, sizeof(tc), (void *)(cc + off_cc_tconn))) {
		count(COUNTER_READ_FAILED);
		return 0;
	}
	if (!id || !tc.data || !itab_is(tc.tab, tlsconn_close_fn))
		return 0; // not over crypto/tls (h2c, or another wrapper)
	struct watch_key wk = {.tgid = tgid, .pc = tc.data};
	struct h2_watch *w = bpf_map_lookup_elem(&h2_watch, &wk);
	if (w) {
		w->wspent = 0;
		w->rspent = 0;
	} else {
		struct h2_watch nw = {};
		if (bpf_map_update_elem(&h2_watch, &wk, &nw, BPF_ANY)) {
			count(COUNTER_INFLIGHT_FULL);
			return 0;
		}
	}
	struct http_client_h2_stream *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_HTTP_CLIENT_H2_STREAM);
	e->conn = tc.data;
	__builtin_memcpy(e->span_id, ids->span_id, sizeof(e->span_id));
	e->stream_id = id;
	e->path_len = 0;
	e->path_cut = 0;
	e->pad = 0;
	struct go_string path = {};
	if (!bpf_probe_read_user(&path, sizeof(path), (void *)(uk.url + off_url_path)) && path.len > 0) {
		__u64 n = path.len;
		if (n > HTTP_H2_PATH_MAX) {
			n = HTTP_H2_PATH_MAX;
			e->path_cut = 1;
		}
		n &= (HTTP_H2_PATH_MAX * 2 - 1);
		if (n > HTTP_H2_PATH_MAX)
			n = HTTP_H2_PATH_MAX;
		if (!bpf_probe_read_user(e->path, n, (void *)(path.ptr + path.len - n)))
			e->path_len = n;
	}
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

// func (c *tls.Conn) Read(b []byte) (int, error)
//
// On the CALL runtime.memmove of the bytes.Reader.Read it inlines (n =
// copy(b, c.input.s[c.input.i:]); emulated; found per binary,
// gobin.CopySite): RBX = the plaintext handed to the caller, RCX = n, c in
// the spill slot off_tls_read_conn from SP. Every TLS read of the process
// that returns data pays the trap and one hash lookup; only watched HTTP/2
// connections are copied.
SEC("uprobe/tls_Conn_Read_copy")
int tls_conn_read_copy(struct pt_regs *ctx)
{
	__u64 c = read_u64(ctx->sp + off_tls_read_conn);
	if (!c)
		return 0;
	copy_h2(c, ctx->bx, (__s64)ctx->cx, false);
	return 0;
}

SEC("uprobe/Transport_roundTrip")
int round_trip_enter(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	__u64 req = GO_ARG2(ctx);
	__u64 goid = read_u64(g + off_g_goid);
	struct inflight *cur = bpf_map_lookup_elem(&client_inflight, &g);

	// A second hit for the same call after morestack (see the server probe).
	if (cur && cur->req == req && cur->goid == goid)
		return 0;

	struct inflight in = {
		.start_ns = bpf_ktime_get_ns(),
		.goid = goid,
		.req = req,
	};
	struct go_key key = go_key_of(goid);
	struct go_trace_ctx *parent = bpf_map_lookup_elem(&go_ctx, &key);
	if (!parent) {
		__u64 pgoid = read_u64(g + off_g_parent_goid);
		if (pgoid) {
			key.goid = pgoid;
			parent = bpf_map_lookup_elem(&go_ctx, &key);
		}
	}
	if (parent) {
		__builtin_memcpy(in.ids.trace_id, parent->trace_id, sizeof(in.ids.trace_id));
		__builtin_memcpy(in.ids.parent_id, parent->span_id, sizeof(in.ids.parent_id));
		__builtin_memcpy(in.received_parent, parent->received_parent, sizeof(in.received_parent));
	} else {
		random_bytes(in.ids.trace_id, sizeof(in.ids.trace_id));
	}
	random_bytes(in.ids.span_id, sizeof(in.ids.span_id));
	if (capture_bodies && is_genai_request(req)) {
		in.model = 1;
		if (capture_h2)
			remember_url(&in);
	}
	if (bpf_map_update_elem(&client_inflight, &g, &in, BPF_ANY))
		count(COUNTER_INFLIGHT_FULL);
	return 0;
}


// func (w persistConnWriter) Write(p []byte) (n int, err error)
//
// Every byte an HTTP/1.x client connection writes, request head and body
// (bufio.Writer's flushes): RAX = w.pc, RBX/RCX = p. Entry (emulated).
SEC("uprobe/persistConnWriter_Write")
int pconn_write(struct pt_regs *ctx)
{
	copy_body(GO_ARG1(ctx), GO_ARG2(ctx), GO_ARG3(ctx), true, false);
	return 0;
}

// func (c tcpConnWithoutReadFrom) Write(b []byte) (int, error)
//
// The writes of io.Copy into a *net.TCPConn from a reader it cannot
// splice or sendfile (net.genericReadFrom): RAX = the *TCPConn, RBX/RCX =
// b. Entry (emulated); it runs only for such copies, which net/http makes
// for request bodies longer than its write buffer.
SEC("uprobe/tcpConnWithoutReadFrom_Write")
int tcp_copy_write(struct pt_regs *ctx)
{
	struct watch_key ck = {.tgid = bpf_get_current_pid_tgid() >> 32, .pc = GO_ARG1(ctx)};
	__u64 *pc = bpf_map_lookup_elem(&body_conn, &ck);
	if (!pc)
		return 0;
	copy_body(*pc, GO_ARG2(ctx), GO_ARG3(ctx), true, false);
	return 0;
}

// func (c *tls.Conn) Write(b []byte) (int, error)
//
// Every write of a TLS connection: RAX = c, RBX/RCX = b (plaintext).
// Entry (emulated). Copied only for connections a model call is using over
// HTTP/1.x (body_conn): the request head that persistConnWriter.Write
// passes on, and the body io.Copy writes past it; and for HTTP/2
// connections a model call used (h2_watch), whose every write is copied.
// Every TLS write of the process pays the trap and one or two hash
// lookups.
SEC("uprobe/tls_Conn_Write")
int tls_conn_write(struct pt_regs *ctx)
{
	struct watch_key ck = {.tgid = bpf_get_current_pid_tgid() >> 32, .pc = GO_ARG1(ctx)};
	__u64 *pc = bpf_map_lookup_elem(&body_conn, &ck);
	if (!pc) {
		if (capture_h2)
			copy_h2(ck.pc, GO_ARG2(ctx), GO_ARG3(ctx), true);
		return 0;
	}
	copy_body(*pc, GO_ARG2(ctx), GO_ARG3(ctx), true, true);
	return 0;
}

// func (pc *persistConn) Read(p []byte) (n int, err error)
//
// On the conditional jump right after n, err = pc.conn.Read(p) (emulated;
// found per binary, gobin.CallResultSite): RAX = n, and p's pointer and pc
// in the spill slots off_pconn_read_p and off_pconn_read_pc from SP.
SEC("uprobe/persistConn_Read_result")
int pconn_read(struct pt_regs *ctx)
{
	__u64 pc = read_u64(ctx->sp + off_pconn_read_pc);
	if (!pc)
		return 0;
	copy_body(pc, read_u64(ctx->sp + off_pconn_read_p), (__s64)ctx->ax, false, false);
	return 0;
}

// func (pc *persistConn) closeLocked(err error)
//
// The connection closes (RAX = pc). For one a model call is still reading,
// the call's response ends here: its client closed the body before the end
// (a user stopping the answer, a cancelled context), net/http then closes
// the connection, and no read would ever tell. Entry (emulated); runs
// about once per connection closed, a hash lookup for any but a watched
// one.
SEC("uprobe/persistConn_closeLocked")
int pconn_close(struct pt_regs *ctx)
{
	struct watch_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .pc = GO_ARG1(ctx)};
	if (!bpf_map_lookup_elem(&body_watch, &k))
		return 0;
	struct go_iface conn = {};
	if (!bpf_probe_read_user(&conn, sizeof(conn), (void *)(k.pc + off_pconn_conn)) && conn.data) {
		struct watch_key ck = {.tgid = k.tgid, .pc = conn.data};
		bpf_map_delete_elem(&body_conn, &ck);
	}
	// As a read that returned nothing: an end-of-connection record, and
	// the watch removed.
	copy_body(k.pc, 0, 0, false, false);
	return 0;
}

// func (pc *persistConn) roundTrip(req *transportRequest) (*Response, error)
//
// Called by Transport.roundTrip, on the same goroutine, once the connection
// for an HTTP/1.x request is chosen and before the request is written
// (RAX = pc). It records which server the span talks to and leaves the
// span's context under the connection's addresses, for a traced server on
// this host to continue (conn_ctx in common/maps.h). Entry only: nothing is
// read at its return.
SEC("uprobe/persistConn_roundTrip")
int persist_conn_round_trip_enter(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = bpf_map_lookup_elem(&client_inflight, &g);
	if (!in)
		return 0;
	if (capture_bodies)
		watch_bodies(in, GO_ARG1(ctx));
	struct go_iface c = {};
	if (bpf_probe_read_user(&c, sizeof(c), (void *)(GO_ARG1(ctx) + off_pconn_conn)))
		return 0;
	struct tcp_addr local = {}, remote = {};
	if (!read_conn_addrs(c, &local, &remote))
		return 0; // TLS or another wrapper: left alone
	in->peer = remote;
	struct conn_tuple t;
	make_tuple(&t, &local, &remote);
	struct conn_trace_ctx tc = {.armed_ns = bpf_ktime_get_ns()};
	__builtin_memcpy(tc.ctx.trace_id, in->ids.trace_id, sizeof(tc.ctx.trace_id));
	__builtin_memcpy(tc.ctx.span_id, in->ids.span_id, sizeof(tc.ctx.span_id));
	__builtin_memcpy(tc.ctx.received_parent, in->received_parent, sizeof(tc.ctx.received_parent));
	bpf_map_update_elem(&conn_ctx, &t, &tc, BPF_ANY);
	count(COUNTER_INJECT_ARMED);
	if (inject_write_user) {
		struct header_key hk = {
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.header = read_u64(in->req + off_req_header),
		};
		if (hk.header)
			bpf_map_update_elem(&header_ctx, &hk, &tc, BPF_ANY);
		else
			count(COUNTER_INJECT_SKIPPED); // no header map to find it by
	}
	__u32 zero = 0;
	__u32 *armed = bpf_map_lookup_elem(&conn_ctx_armed, &zero);
	if (armed && !*armed)
		*armed = 1;
	return 0;
}

// func (h Header) writeSubset(w io.Writer, exclude map[string]bool, trace *httptrace.ClientTrace) error
//
// RAX = h, RBX/RCX = w. Request.write calls it on the write loop goroutine
// once the request line, Host, User-Agent and framing headers are in the
// connection's *bufio.Writer, before the request's own headers. When h
// belongs to a request armed above, the traceparent line goes into the
// buffer's free space and the buffer's length grows by as much: net/http
// then writes the rest after it, and the request leaves with one more
// header and nothing else changed. Writes happen on this goroutine only,
// which the probe has stopped.
SEC("uprobe/Header_writeSubset")
int write_subset_enter(struct pt_regs *ctx)
{
	struct header_key hk = {.tgid = bpf_get_current_pid_tgid() >> 32, .header = GO_ARG1(ctx)};
	struct conn_trace_ctx *found = bpf_map_lookup_elem(&header_ctx, &hk);
	if (!found)
		return 0;
	struct conn_trace_ctx tc = *found;
	bpf_map_delete_elem(&header_ctx, &hk);
	if (bpf_ktime_get_ns() - tc.armed_ns > CONN_CTX_MAX_AGE_NS)
		return 0;

	__u64 w = GO_ARG3(ctx);
	if (!w || !itab_is(GO_ARG2(ctx), bufio_writer_write_fn)) {
		count(COUNTER_INJECT_SKIPPED);
		return 0;
	}
	__u32 zero = 0;
	struct header_scratch *hs = bpf_map_lookup_elem(&header_scratch, &zero);
	if (!hs)
		return 0;
	struct trace_headers th = {};
	find_trace_headers_in(hk.header, hs, &th);
	if (th.traceparent.len) {
		// A header that forwards the one the parent server span received
		// names the wrong parent, but its bytes are the proxy's own (a
		// cloned header shares the incoming request's strings, or a
		// constant): never written. A traced server on this host corrects
		// the parent from the connection's context instead.
		struct span_ids got = {};
		if (parse_traceparent(th.traceparent, hs, &got) && !all_zero(tc.ctx.received_parent, 8) &&
		    trace_id_eq(got.trace_id, tc.ctx.trace_id) && span_id_eq(got.parent_id, tc.ctx.received_parent))
			count(COUNTER_INJECT_KEPT_FORWARDED);
		else
			count(COUNTER_INJECT_KEPT);
		return 0;
	}
	struct go_slice buf = {};
	__s64 n = 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)(w + off_bufio_buf)) ||
	    bpf_probe_read_user(&n, sizeof(n), (void *)(w + off_bufio_n))) {
		count(COUNTER_INJECT_FAILED);
		return 0;
	}
	if (!buf.ptr || n < 0 || buf.len - n < TP_LINE_LEN) {
		count(COUNTER_INJECT_SKIPPED); // no room: net/http would have to flush first
		return 0;
	}
	char line[TP_LINE_LEN];
	format_traceparent_line(line, &tc.ctx);
	// The line first, then the length that makes it part of the buffer:
	// if the second write fails, the bytes past n are ignored.
	if (bpf_probe_write_user((void *)(buf.ptr + n), line, TP_LINE_LEN)) {
		count(COUNTER_INJECT_FAILED);
		return 0;
	}
	n += TP_LINE_LEN;
	if (bpf_probe_write_user((void *)(w + off_bufio_n), &n, sizeof(n))) {
		count(COUNTER_INJECT_FAILED);
		return 0;
	}
	count(COUNTER_INJECTED);
	return 0;
}

// End the round trip in flight on this goroutine with the result resp, err
// (the itab and data of err).
static __always_inline void end_round_trip(__u64 g, __u64 resp, __u64 err_tab, bool check_resp)
{
	struct inflight *found = bpf_map_lookup_elem(&client_inflight, &g);
	if (!found)
		return;
	struct inflight in = *found;
	bpf_map_delete_elem(&client_inflight, &g);
	if (in.h2_url) {
		struct url_key uk = {.tgid = bpf_get_current_pid_tgid() >> 32, .url = read_u64(in.req + off_req_url)};
		bpf_map_delete_elem(&genai_url, &uk);
	}

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&client_scratch, &zero);
	if (!s)
		return;
	if (COPY(s->req, req_read_size, in.req)) {
		count(COUNTER_READ_FAILED);
		return;
	}
	struct http_client_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_HTTP_CLIENT);
	e->start_ns = in.start_ns;
	e->goid = in.goid;
	e->ids = in.ids;
	e->err_type = err_tab;
	e->content_length = FIELD(s->req, off_req_content_length, __s64);
	e->status = 0;
	e->info = 0;
	e->truncated = 0;
	e->pad = 0;
	__builtin_memset(e->pad2, 0, sizeof(e->pad2));
	// All zero when no connection was seen (the inflight entry starts zeroed).
	__builtin_memcpy(e->peer_ip, in.peer.ip, sizeof(e->peer_ip));
	e->peer_ip_len = in.peer.ip_len;
	e->peer_port = in.peer.port;
	if (in.peer.ip_len)
		e->info |= HTTP_CLIENT_INFO_PEER_ADDR;
	if (in.genai)
		e->info |= HTTP_CLIENT_INFO_GENAI;
	if (err_tab)
		e->info |= HTTP_CLIENT_INFO_ERROR;
	// Read from a stack slot, the response is trusted only when it names
	// this round trip's request, which roundTrip sets before returning it.
	if (resp && !err_tab && !COPY(s->resp, resp_read_size, resp) &&
	    (!check_resp || FIELD(s->resp, off_resp_request, __u64) == in.req)) {
		e->status = FIELD(s->resp, off_resp_status_code, __s64);
		e->info |= HTTP_CLIENT_INFO_RESPONSE;
	}

	struct go_string str = FIELD(s->req, off_req_method, struct go_string);
	e->method_len = copy_go_string(e->method, sizeof(e->method), str, &e->truncated, HTTP_TRUNC_METHOD);
	e->scheme_len = 0;
	e->host_len = 0;
	e->path_len = 0;
	e->query_len = 0;
	__u64 url = FIELD(s->req, off_req_url, __u64);
	if (url && !COPY(s->url, url_read_size, url)) {
		__u8 ignored = 0;
		str = FIELD(s->url, off_url_scheme, struct go_string);
		e->scheme_len = copy_go_string(e->scheme, sizeof(e->scheme), str, &ignored, 0);
		str = FIELD(s->url, off_url_host, struct go_string);
		e->host_len = copy_go_string(e->host, sizeof(e->host), str, &e->truncated, HTTP_TRUNC_HOST);
		str = FIELD(s->url, off_url_path, struct go_string);
		e->path_len = copy_go_string(e->path, sizeof(e->path), str, &e->truncated, HTTP_TRUNC_PATH);
		str = FIELD(s->url, off_url_raw_query, struct go_string);
		e->query_len = copy_go_string(e->query, sizeof(e->query), str, &e->truncated, HTTP_TRUNC_QUERY);
	}
	if (e->truncated)
		e->hdr.flags |= EVENT_FLAG_TRUNCATED;
	bpf_ringbuf_submit(e, wakeup_flags());
}

// func1 of roundTrip: RDX = its closure, whose word at rt_closure_err is
// &err, a slot of roundTrip's frame; the *Response is in the slot
// off_rt_resp - off_rt_err bytes from it. A second hit after morestack
// finds the round trip ended.
SEC("uprobe/Transport_roundTrip_func1")
int round_trip_end(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	if (!bpf_map_lookup_elem(&client_inflight, &g))
		return 0;
	__u64 errp = read_u64(ctx->dx + rt_closure_err);
	struct go_iface err = {};
	if (!errp || bpf_probe_read_user(&err, sizeof(err), (void *)errp)) {
		count(COUNTER_READ_FAILED);
		return 0;
	}
	__u64 resp = err.tab ? 0 : read_u64(errp + (off_rt_resp - off_rt_err));
	end_round_trip(g, resp, err.tab, true);
	return 0;
}

// On every RET of roundTrip, where the end cannot be read from its frame:
// RAX = *Response, RBX/RCX = err.
SEC("uprobe/Transport_roundTrip_ret")
int round_trip_return(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	if (!bpf_map_lookup_elem(&client_inflight, &g)) {
		count(COUNTER_NO_ENTRY);
		return 0;
	}
	end_round_trip(g, GO_ARG1(ctx), GO_ARG2(ctx), false);
	return 0;
}

#define SKIP_ALT_LEN 33

// On every RET of the alternate round tripper (HTTP/2 over TLS): RAX =
// *Response, RBX/RCX = err. It answers net/http.ErrSkipAltProtocol when it
// has no connection for the request yet: roundTrip then dials and goes on
// to its deferred closure, which ends the span.
SEC("uprobe/alt_RoundTrip_ret")
int round_trip_alt_return(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	if (!bpf_map_lookup_elem(&client_inflight, &g))
		return 0;
	__u64 err_tab = GO_ARG2(ctx);
	if (itab_is(err_tab, errorstring_error_fn)) {
		// errors.errorString{s string}: "net/http: skip alternate protocol".
		const char want[SKIP_ALT_LEN + 1] = "net/http: skip alternate protocol";
		struct go_string msg = {};
		char text[SKIP_ALT_LEN];
		if (!bpf_probe_read_user(&msg, sizeof(msg), (void *)GO_ARG3(ctx)) && msg.len == SKIP_ALT_LEN &&
		    !bpf_probe_read_user(text, sizeof(text), (void *)msg.ptr)) {
			bool same = true;
#pragma unroll
			for (int i = 0; i < SKIP_ALT_LEN; i++)
				same = same && text[i] == want[i];
			if (same)
				return 0;
		}
	}
	end_round_trip(g, GO_ARG1(ctx), err_tab, false);
	return 0;
}
