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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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
volatile const __u64 off_netconn_fd;
volatile const __u64 off_netfd_laddr;
volatile const __u64 off_tcpaddr_ip;
volatile const __u64 off_tcpaddr_port;

// Concrete types behind interfaces are recognised by their itab's first
// method, whose address pclntab gives even in a stripped binary: an
// interface's methods are sorted by name, so fun[0] of a ResponseWriter itab
// is Header and fun[0] of a net.Conn itab is Close. These are the addresses
// of net/http.(*response).Header and net.(*TCPConn).Close; zero disables the
// reads that depend on them rather than guessing.
volatile const __u64 response_header_fn;
volatile const __u64 tcpconn_close_fn;

// Offset of fun[0] in runtime.itab (inter, _type, hash + padding) on amd64.
#define ITAB_FUN0 24

static __always_inline bool itab_is(__u64 tab, __u64 fun0)
{
	return fun0 && tab && read_u64(tab + ITAB_FUN0) == fun0;
}

struct inflight {
	__u64 start_ns;
	__u64 goid;
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
	if (bpf_map_update_elem(&server_inflight, &g, &in, BPF_ANY))
		count(COUNTER_INFLIGHT_FULL);
	return 0;
}

// Read the local address of the connection behind an HTTP/1.x response:
// response.conn.rwc (a net.Conn holding *net.TCPConn) .fd.laddr (*net.TCPAddr).
static __always_inline void read_local_addr(struct http_server_event *e, __u64 resp)
{
	__u64 conn = read_u64(resp + off_resp_conn);
	if (!conn)
		return;
	if (read_u64(conn + off_conn_tls_state))
		e->info |= HTTP_INFO_TLS;

	struct go_iface rwc = {};
	if (bpf_probe_read_user(&rwc, sizeof(rwc), (void *)(conn + off_conn_rwc)) ||
	    !itab_is(rwc.tab, tcpconn_close_fn))
		return;
	__u64 fd = read_u64(rwc.data + off_netconn_fd);
	if (!fd)
		return;
	struct go_iface laddr = {};
	if (bpf_probe_read_user(&laddr, sizeof(laddr), (void *)(fd + off_netfd_laddr)) || !laddr.data)
		return;
	struct go_slice ip = {};
	if (bpf_probe_read_user(&ip, sizeof(ip), (void *)(laddr.data + off_tcpaddr_ip)))
		return;
	if (ip.len != 4 && ip.len != 16)
		return;
	__u64 n = ip.len;
	barrier_var(n);
	if (n > sizeof(e->local_ip))
		return;
	if (bpf_probe_read_user(e->local_ip, n, (void *)ip.ptr))
		return;
	e->local_ip_len = n;
	e->local_port = read_u64(laddr.data + off_tcpaddr_port);
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

	struct http_server_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_HTTP_SERVER);
	e->start_ns = in.start_ns;
	e->goid = in.goid;
	e->content_length = read_u64(in.req + off_req_content_length);
	e->proto_major = read_u64(in.req + off_req_proto_major);
	e->proto_minor = read_u64(in.req + off_req_proto_minor);
	e->status = 0;
	e->resp_written = 0;
	e->local_port = 0;
	e->local_ip_len = 0;
	e->info = 0;
	e->truncated = 0;
	__builtin_memset(e->local_ip, 0, sizeof(e->local_ip));
	__builtin_memset(e->pad, 0, sizeof(e->pad));

	if (itab_is(in.resp_tab, response_header_fn)) {
		e->status = read_u64(in.resp + off_resp_status);
		e->resp_written = read_u64(in.resp + off_resp_written);
		e->info |= HTTP_INFO_RESPONSE_KNOWN;
		read_local_addr(e, in.resp);
	}

	e->method_len = read_go_string(e->method, sizeof(e->method), in.req + off_req_method,
				       &e->truncated, HTTP_TRUNC_METHOD);
	e->host_len = read_go_string(e->host, sizeof(e->host), in.req + off_req_host,
				     &e->truncated, HTTP_TRUNC_HOST);
	e->remote_len = read_go_string(e->remote, sizeof(e->remote), in.req + off_req_remote_addr,
				       &e->truncated, HTTP_TRUNC_REMOTE);
	e->pattern_len = 0;
	if (has_pattern)
		e->pattern_len = read_go_string(e->pattern, sizeof(e->pattern), in.req + off_req_pattern,
						&e->truncated, HTTP_TRUNC_PATTERN);
	e->path_len = 0;
	e->query_len = 0;
	__u64 url = read_u64(in.req + off_req_url);
	if (url) {
		e->path_len = read_go_string(e->path, sizeof(e->path), url + off_url_path,
					     &e->truncated, HTTP_TRUNC_PATH);
		e->query_len = read_go_string(e->query, sizeof(e->query), url + off_url_raw_query,
					      &e->truncated, HTTP_TRUNC_QUERY);
	}
	if (e->truncated)
		e->hdr.flags |= EVENT_FLAG_TRUNCATED;
	if (!e->method_len)
		count(COUNTER_READ_FAILED);

	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}
