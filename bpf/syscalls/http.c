// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// HTTP/1.x and database protocols of any process, from its socket reads and
// writes: syscall tracepoints (no uprobes, no kprobes), for the processes
// user space lists in traced_tgids.
//
// A read (read, recvfrom) whose data starts like an HTTP/1.x request or
// response, and a write (write, sendto) whose data does, go to user space
// with their first SOCK_DATA_MAX bytes, the file descriptor, its socket's
// endpoints and the time; user space pairs requests with responses per
// descriptor and builds the spans. A write that starts like a PostgreSQL
// client's first message or query, or like a Redis (RESP) command, marks
// its descriptor: from then on every read and write of it goes to user
// space, which parses the messages; so does a read that starts like a
// MySQL/MariaDB server's greeting, or a write like a MySQL command on a
// connection opened before the agent. A TLS ClientHello goes to user space
// (for the server's name) and marks its descriptor as one to leave alone. Everything else (files, pipes, the rest
// of a body) costs one map lookup and a 16-byte read at most, and a process
// not listed costs one map lookup. A marked descriptor is remembered until
// it is closed, so that user space learns about the close.
//
// The read right after one that started a request is sent whatever it
// holds, so that a head that arrived in pieces is complete in user space.
//
// It also follows the TCP connections of those processes (see below).
//
// readv/writev and recvmsg/sendmsg are seen through their first buffer.
// Not covered yet: sendfile, recvmmsg/sendmmsg, io_uring, and TLS.

#include "common/kernel.h"
#include "common/maps.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

// Processes to trace, by thread-group id; filled by user space, and by the
// fork tracepoint for their children (value TRACED_CHILD).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} traced_tgids SEC(".maps");

// traced_tgids values.
enum traced_how {
	TRACED_SELECTED = 1, // selected by the user
	TRACED_CHILD = 2,    // forked by a traced process
};

// A read in progress: where its data goes.
struct pending_read {
	__u64 buf;
	__u64 cap; // bytes the buffer holds: the read's data beyond goes elsewhere (readv)
	__s32 fd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); // pid_tgid
	__type(value, struct pending_read);
} pending_reads SEC(".maps");

struct fd_key {
	__u32 tgid;
	__s32 fd;
};

// Descriptors that carried HTTP or a database protocol, to report their
// close and to know what their data is.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, __u8); // enum fd_flags
} sock_fds SEC(".maps");

enum fd_flags {
	FD_HTTP = 1 << 0,
	// The last read started a request: the next read goes to user space
	// too, whatever it holds, in case the head goes on there (a request
	// that arrived in pieces).
	FD_NEXT_READ = 1 << 1,
	// A PostgreSQL or Redis client connection: every read and write goes
	// to user space.
	FD_POSTGRES = 1 << 2,
	FD_REDIS = 1 << 3,
	// A TLS client connection: its ClientHello went to user space (for
	// the server name); nothing after it can be read.
	FD_TLS = 1 << 4,
	FD_MYSQL = 1 << 5,
	// A response head was written last: every later write goes to user
	// space as body (length and tail only) until the next request is read,
	// so that a streamed response ends where its last chunk is written.
	FD_RESPONDING = 1 << 6,
};

// Where a read or write ends, when it is not simply buf + len (readv and
// writev): its length in all, and its last buffer's bytes [base, end);
// partial when those do not cover all of it.
struct io_end {
	__u64 total;
	__u64 base, end;
	__u8 partial;
	__u8 pad[7];
};

// errno values the programs tell apart (vmlinux.h has no macros).
#define E2BIG 7

static __always_inline bool traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced_tgids, &tgid) != NULL;
}

// Does data start like an HTTP/1.x message: "HTTP/1." (a response) or an
// upper-case method followed by a space and a '/' or an absolute URI?
static __always_inline bool looks_like_http(const char p[16])
{
	if (p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/' && p[5] == '1' && p[6] == '.')
		return true;
	int i = 0;
#pragma unroll
	for (; i < 8; i++) {
		if (p[i] < 'A' || p[i] > 'Z')
			break;
	}
	if (i < 3 || i > 7 || p[i] != ' ')
		return false;
	char c = p[i + 1];
	return c == '/' || c == '*' || (c >= 'a' && c <= 'z');
}

static __always_inline __u32 be32(const char *p)
{
	return (__u32)(__u8)p[0] << 24 | (__u32)(__u8)p[1] << 16 | (__u32)(__u8)p[2] << 8 | (__u32)(__u8)p[3];
}

// Does a write start like a PostgreSQL client: a startup packet or an SSL
// or GSS encryption request, alone in the write (length, then a protocol
// code), or, on a connection opened before the agent attached, a simple
// query ('Q', alone) or a Parse ('P') whose length fits the write?
static __always_inline bool looks_like_postgres_client(const char p[16], __s64 len)
{
	if (len >= 8 && be32(p) == len) {
		__u32 code = be32(p + 4);
		if (code >> 16 == 3 || code == 80877103 || code == 80877104)
			return true;
	}
	if ((p[0] == 'Q' || p[0] == 'P') && len >= 6) {
		__s64 n = be32(p + 1);
		if (n >= 5 && n < (1 << 24) && (p[0] == 'Q' ? n + 1 == len : n + 1 <= len))
			return true;
	}
	return false;
}

// Does a write start like a RESP command: an array of bulk strings,
// "*N\r\n$"?
static __always_inline bool looks_like_resp_command(const char p[16])
{
	if (p[0] != '*')
		return false;
	int i = 1;
#pragma unroll
	for (; i < 5; i++) {
		if (p[i] < '0' || p[i] > '9')
			break;
	}
	if (i == 1 || i == 5)
		return false;
	return p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '$';
}

// Does a write start like a TLS ClientHello: a handshake record (0x16) of
// TLS 1.0-1.3 whose message is a ClientHello (1)?
static __always_inline bool looks_like_tls_client_hello(const char p[16], __s64 len)
{
	return len >= 9 && p[0] == 0x16 && p[1] == 0x03 && (__u8)p[2] <= 0x04 && p[5] == 0x01;
}

static __always_inline __u32 le24(const char *p)
{
	return (__u32)(__u8)p[0] | (__u32)(__u8)p[1] << 8 | (__u32)(__u8)p[2] << 16;
}

// Does a read start like a MySQL or MariaDB server's greeting: one packet
// (3-byte length, sequence 0) filling the read, of protocol version 10,
// whose server version starts with a digit?
static __always_inline bool looks_like_mysql_greeting(const char p[16], __s64 len)
{
	return len >= 10 && le24(p) + 4 == len && p[3] == 0 && p[4] == 0x0a && p[5] >= '1' && p[5] <= '9';
}

// Does a write start like a MySQL client's command on a connection opened
// before the agent attached: one packet of sequence 0 filling the write,
// holding COM_QUERY (3) or COM_STMT_PREPARE (0x16) and some text?
static __always_inline bool looks_like_mysql_command(const char p[16], __s64 len)
{
	return len >= 6 && le24(p) + 4 == len && p[3] == 0 && (p[4] == 0x03 || p[4] == 0x16);
}

// Does a MySQL read end with the packet that ends a response: an EOF packet
// (length 5, 0xfe) or an OK packet with the 0xfe header (length 7, no rows
// affected and no insert id: the end of a result set when the client asked
// for no EOF packets), whose status does not say more results follow?
static __always_inline bool mysql_read_ends_response(__u64 buf, __s64 len)
{
	char t[11] = {};
	if (len < 11 || bpf_probe_read_user(t, sizeof(t), (void *)(buf + len - 11)))
		return false;
	// SERVER_MORE_RESULTS_EXISTS is bit 3 of the status flags.
	if (t[2] == 5 && t[3] == 0 && t[4] == 0 && t[6] == (char)0xfe)
		return !(t[9] & 0x08);
	return t[0] == 7 && t[1] == 0 && t[2] == 0 && t[4] == (char)0xfe && t[5] == 0 && t[6] == 0 && !(t[7] & 0x08);
}

// Reads the family and, for TCP and UDP over IP, the endpoints of a socket.
static __always_inline void sock_endpoints(const struct sock *sk, __u16 *family, __u16 *local_port,
					   __u16 *remote_port, __u8 local_ip[16], __u8 remote_ip[16])
{
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	*family = fam;
	if (fam != AF_INET && fam != AF_INET6)
		return;
	// inet_sport, not skc_num: the kernel clears skc_num (releasing the
	// port) before it reports the move to TCP_CLOSE.
	*local_port = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	*remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (fam == AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 b = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(local_ip, &a, 4);
		__builtin_memcpy(remote_ip, &b, 4);
	} else {
		BPF_CORE_READ_INTO(local_ip, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(remote_ip, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

// The socket behind descriptor fd of the current process, through its file
// table; NULL when fd is not a socket.
static __always_inline const struct sock *fd_sock(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(so, sk);
}

// Fills e's socket fields from descriptor fd of the current process; they
// stay zero when fd is not a socket. The endpoints are read only when ends
// is set (a descriptor's first record): user space keeps them.
static __always_inline void fd_socket(struct sock_data_event *e, __s32 fd, bool ends)
{
	e->family = 0;
	e->local_port = 0;
	e->remote_port = 0;
	__builtin_memset(e->local_ip, 0, sizeof(e->local_ip));
	__builtin_memset(e->remote_ip, 0, sizeof(e->remote_ip));
	const struct sock *sk = fd_sock(fd);
	e->sock = (__u64)sk;
	if (sk && ends)
		sock_endpoints(sk, &e->family, &e->local_port, &e->remote_port, e->local_ip, e->remote_ip);
}

// Keep the last bytes of a write's last buffer [base, last); of a short
// one, what it has.
static __always_inline void fill_tail(struct sock_data_event *e, __u64 base, __u64 last)
{
	e->tail_len = 0;
	__builtin_memset(e->tail, 0, sizeof(e->tail));
	__u64 tn = last > base ? last - base : 0;
	if (tn > SOCK_TAIL_MAX)
		tn = SOCK_TAIL_MAX;
	barrier_var(tn);
	if (tn > 0 && tn <= SOCK_TAIL_MAX && !bpf_probe_read_user(e->tail, tn, (void *)(last - tn)))
		e->tail_len = tn;
}

// A write of a response's body in progress (write, sendto, writev, sendmsg,
// sendfile): what it asked to send. Its record is made at the exit, where
// the kernel says how much went: a non-blocking server's write may send
// part of a buffer and ask again for the rest.
struct pending_body {
	__u64 total;      // bytes asked; 0 for sendfile (the exit says)
	__u64 base, last; // its last buffer, for the tail (0: none)
	__s32 fd;
	__u8 partial;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); // pid_tgid
	__type(value, struct pending_body);
} pending_bodies SEC(".maps");

static __always_inline void body_enter(__u64 id, __s32 fd, __u64 total, __u64 base, __u64 last, __u8 partial)
{
	struct pending_body b = {.total = total, .base = base, .last = last, .fd = fd, .partial = partial};
	bpf_map_update_elem(&pending_bodies, &id, &b, BPF_ANY);
}

// A record without data (a tenth of the ring space): a close, or a write
// of a response's body with its length and the tail of [base, last).
static __always_inline void emit_short(__u64 id, __s32 fd, __u8 dir, __u8 proto, __u64 len, __u8 flags, __u64 base,
				       __u64 last)
{
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e) - SOCK_DATA_MAX, 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_SOCK_DATA);
	e->tid = (__u32)id;
	e->fd = fd;
	e->len = len > 0xffffffff ? 0xffffffff : len;
	e->dir = dir;
	e->proto = proto;
	e->cap = 0;
	e->flags = flags;
	fill_tail(e, base, last);
	fd_socket(e, fd, false); // a close runs before the descriptor goes
	bpf_ringbuf_submit(e, wakeup_flags());
}

// A write of a response's body, for user space to find where the response
// ends.
static __always_inline void emit_body(__u64 id, __s32 fd, __u64 total, __u64 base, __u64 last, __u8 partial)
{
	emit_short(id, fd, SOCK_DIR_WRITE_BODY, SOCK_PROTO_HTTP, total, partial ? SOCK_FLAG_PARTIAL : 0, base, last);
}

static __always_inline void emit(__u64 id, __s32 fd, __u64 buf, __s64 len, __u8 dir, const struct io_end *end)
{
	if (len <= 0 || !buf)
		return;
	struct fd_key k = {.tgid = id >> 32, .fd = fd};
	char head[16] = {};
	if (bpf_probe_read_user(head, len < 16 ? (__u32)len & 15 : 16, (void *)buf))
		return;
	__u8 *f = bpf_map_lookup_elem(&sock_fds, &k);
	__u8 was = f ? *f : 0;
	__u8 flags, proto;
	if (was & FD_POSTGRES) {
		proto = SOCK_PROTO_POSTGRES;
		flags = was;
	} else if (was & FD_REDIS) {
		proto = SOCK_PROTO_REDIS;
		flags = was;
	} else if (was & FD_MYSQL) {
		proto = SOCK_PROTO_MYSQL;
		flags = was;
	} else if (was & FD_TLS) {
		return;
	} else if (looks_like_http(head)) {
		// A request read: watch the next read. A response, or a
		// write, ends that. A response: follow its body.
		proto = SOCK_PROTO_HTTP;
		flags = FD_HTTP;
		if (dir == SOCK_DIR_READ && head[0] != 'H')
			flags |= FD_NEXT_READ;
		// (Not after a 101: what follows is another protocol.)
		if (head[0] == 'H' && dir == SOCK_DIR_WRITE && !(head[9] == '1' && head[10] == '0' && head[11] == '1'))
			flags |= FD_RESPONDING;
	} else if ((was & FD_NEXT_READ) && dir == SOCK_DIR_READ) {
		proto = SOCK_PROTO_HTTP;
		flags = FD_HTTP;
		dir = SOCK_DIR_READ_MORE;
	} else if ((was & FD_RESPONDING) && dir == SOCK_DIR_WRITE) {
		if (end)
			body_enter(id, fd, end->total, end->base, end->end, end->partial);
		else
			body_enter(id, fd, len, buf, buf + len, 0);
		return;
	} else if (was & FD_HTTP) {
		return;
	} else if (dir != SOCK_DIR_WRITE) {
		if (!looks_like_mysql_greeting(head, len))
			return;
		proto = SOCK_PROTO_MYSQL;
		flags = FD_MYSQL;
	} else if (looks_like_postgres_client(head, len)) {
		proto = SOCK_PROTO_POSTGRES;
		flags = FD_POSTGRES;
	} else if (looks_like_resp_command(head)) {
		proto = SOCK_PROTO_REDIS;
		flags = FD_REDIS;
	} else if (looks_like_tls_client_hello(head, len)) {
		proto = SOCK_PROTO_TLS;
		flags = FD_TLS;
	} else if (looks_like_mysql_command(head, len)) {
		proto = SOCK_PROTO_MYSQL;
		flags = FD_MYSQL;
	} else {
		return;
	}
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_SOCK_DATA);
	e->tid = (__u32)id;
	e->fd = fd;
	__u64 total = end ? end->total : (__u64)len;
	e->len = total > 0xffffffff ? 0xffffffff : total;
	e->dir = dir;
	e->proto = proto;
	e->flags = end && end->partial ? SOCK_FLAG_PARTIAL : 0;
	// The tail of an HTTP write only: one call, whatever the branch (each
	// inlined copy costs the verifier as much again).
	__u64 tail_base = 0, tail_end = 0;
	if (proto == SOCK_PROTO_HTTP && dir == SOCK_DIR_WRITE) {
		tail_base = end ? end->base : buf;
		tail_end = end ? end->end : buf + len;
	}
	fill_tail(e, tail_base, tail_end);
	// ReadyForQuery ('Z', length 5, status) closing a read: the server is
	// done, wherever the capture stops.
	char tail[6] = {};
	if (proto == SOCK_PROTO_POSTGRES && dir == SOCK_DIR_READ && len >= 6 &&
	    !bpf_probe_read_user(tail, sizeof(tail), (void *)(buf + len - 6)) && tail[0] == 'Z' && tail[1] == 0 &&
	    tail[2] == 0 && tail[3] == 0 && tail[4] == 5)
		e->flags |= SOCK_FLAG_READY;
	if (proto == SOCK_PROTO_MYSQL && dir == SOCK_DIR_READ && mysql_read_ends_response(buf, len))
		e->flags |= SOCK_FLAG_READY;
	fd_socket(e, fd, !was);
	__u32 n = len > SOCK_DATA_MAX ? SOCK_DATA_MAX : len;
	barrier_var(n);
	if (n > SOCK_DATA_MAX)
		n = SOCK_DATA_MAX;
	e->cap = 0;
	if (!bpf_probe_read_user(e->data, n, (void *)buf))
		e->cap = n;
	bpf_ringbuf_submit(e, wakeup_flags());
	if (flags != was)
		bpf_map_update_elem(&sock_fds, &k, &flags, BPF_ANY);
}

static __always_inline void read_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return;
	struct pending_read r = {.fd = (__s32)ctx->args[0], .buf = ctx->args[1], .cap = ctx->args[2]};
	bpf_map_update_elem(&pending_reads, &id, &r, BPF_ANY);
}

static __always_inline void read_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_read *r = bpf_map_lookup_elem(&pending_reads, &id);
	if (!r)
		return;
	struct pending_read rd = *r;
	bpf_map_delete_elem(&pending_reads, &id);
	__s64 n = ctx->ret;
	if (n > 0 && (__u64)n > rd.cap)
		n = rd.cap;
	emit(id, rd.fd, rd.buf, n, SOCK_DIR_READ, NULL);
}

static __always_inline void write_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return;
	emit(id, (__s32)ctx->args[0], ctx->args[1], (__s64)ctx->args[2], SOCK_DIR_WRITE, NULL);
}

// The first buffer of an iovec array (readv, writev), or of a msghdr's
// (recvmsg, sendmsg): where a request or response starts. A head split
// over several buffers is seen up to the first one's end.
static __always_inline bool first_iov(__u64 iov, __u64 *base, __u64 *len)
{
	struct iovec v = {};
	if (!iov || bpf_probe_read_user(&v, sizeof(v), (void *)iov))
		return false;
	*base = (__u64)v.iov_base;
	*len = v.iov_len;
	return true;
}

static __always_inline __u64 msg_iov(__u64 msg, __u64 *count)
{
	struct user_msghdr m = {};
	if (!msg || bpf_probe_read_user(&m, sizeof(m), (void *)msg) || m.msg_iovlen < 1)
		return 0;
	*count = m.msg_iovlen;
	return (__u64)m.msg_iov;
}

static __always_inline void readv_enter(struct trace_event_raw_sys_enter *ctx, __u64 iov)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return;
	__u64 base, len;
	if (!first_iov(iov, &base, &len))
		return;
	struct pending_read r = {.fd = (__s32)ctx->args[0], .buf = base, .cap = len};
	bpf_map_update_elem(&pending_reads, &id, &r, BPF_ANY);
}

// Buffers of a writev or sendmsg read at once: enough for the head, body
// and chunk framing that servers write together.
#define WRITEV_SEEN 8

static __always_inline void writev_enter(struct trace_event_raw_sys_enter *ctx, __u64 iov, __u64 count)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32) || !iov || !count)
		return;
	struct iovec v[WRITEV_SEEN] = {};
	__u64 k = count > WRITEV_SEEN ? WRITEV_SEEN : count;
	barrier_var(k);
	if (k < 1 || k > WRITEV_SEEN || bpf_probe_read_user(v, k * sizeof(v[0]), (void *)iov))
		return;
	// Its length in all (the buffers past k are zero: no branch per
	// buffer, which would multiply the verifier's paths) and its last
	// buffer, read again by address. With more buffers than that, the
	// length is the first eight's and the end is not known (partial).
	struct io_end end = {.partial = count > WRITEV_SEEN};
	for (int i = 0; i < WRITEV_SEEN; i++)
		end.total += v[i].iov_len;
	struct iovec last = {};
	if (!end.partial && !bpf_probe_read_user(&last, sizeof(last), (void *)(iov + (k - 1) * sizeof(last)))) {
		end.base = (__u64)last.iov_base;
		end.end = end.base + last.iov_len;
	}
	emit(id, (__s32)ctx->args[0], (__u64)v[0].iov_base, (__s64)v[0].iov_len, SOCK_DIR_WRITE, &end);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	readv_enter(ctx, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_readv")
int sys_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	read_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	__u64 count = 0;
	readv_enter(ctx, msg_iov(ctx->args[1], &count));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int sys_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	read_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	writev_enter(ctx, ctx->args[1], ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	__u64 count = 0;
	__u64 iov = msg_iov(ctx->args[1], &count);
	writev_enter(ctx, iov, count);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	read_enter(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int sys_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	read_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	read_enter(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int sys_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	read_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	write_enter(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	write_enter(ctx);
	return 0;
}

// The exit of a write of a response's body: the bytes that went. A write
// that sent only part of what it asked did not reach its end, so its tail
// is not the response's.
static __always_inline void body_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_body *p = bpf_map_lookup_elem(&pending_bodies, &id);
	if (!p)
		return;
	struct pending_body b = *p;
	bpf_map_delete_elem(&pending_bodies, &id);
	__s64 ret = ctx->ret;
	if (ret <= 0)
		return;
	if ((__u64)ret < b.total)
		emit_body(id, b.fd, ret, 0, 0, false);
	else
		emit_body(id, b.fd, ret, b.base, b.last, b.partial);
}

SEC("tracepoint/syscalls/sys_exit_write")
int sys_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	body_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int sys_exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	body_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_writev")
int sys_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	body_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int sys_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	body_exit(ctx);
	return 0;
}

// sendfile on a descriptor writing a response's body (a file server's,
// nginx's): the bytes it sent are more of the body. File bytes: no chunk
// framing to find at their end.
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile64(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct fd_key k = {.tgid = id >> 32, .fd = (__s32)ctx->args[0]};
	__u8 *f = bpf_map_lookup_elem(&sock_fds, &k);
	if (f && (*f & FD_RESPONDING))
		body_enter(id, k.fd, 0, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int sys_exit_sendfile64(struct trace_event_raw_sys_exit *ctx)
{
	body_exit(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct fd_key k = {.tgid = id >> 32, .fd = (__s32)ctx->args[0]};
	if (!bpf_map_lookup_elem(&sock_fds, &k))
		return 0;
	bpf_map_delete_elem(&sock_fds, &k);
	emit_short(id, k.fd, SOCK_DIR_CLOSE, 0, 0, 0, 0, 0);
	return 0;
}

// ---------------------------------------------------------------------------
// Connections: every TCP connection of a traced process, with its role,
// endpoints, open and close times and bytes each way.
//
// inet_sock_set_state often runs in softirq context, where the current task
// is not the connection's owner. A client connection is recognised at
// CLOSE -> SYN_SENT, which runs in the connecting process (connect()); a
// server connection by its local port, which user space lists for the
// ports traced processes listen on. The owner is then remembered by socket.

// Processes whose connections are followed (every selected process, Go or
// not), by tgid; filled by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} conn_tgids SEC(".maps");

// Listening ports of traced processes, to their tgid; filled by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);
	__type(value, __u32);
} traced_ports SEC(".maps");

// Owner (tgid) and role of the connections being followed, by socket.
struct conn_owner {
	__u32 tgid;
	__u8 role;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_owner);
} conn_owners SEC(".maps");

static __always_inline void emit_conn(const struct sock *sk, struct conn_owner *o, __u8 kind)
{
	struct conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_CONN);
	e->hdr.pid = o->tgid;
	e->sock = (__u64)sk;
	e->kind = kind;
	e->role = o->role;
	e->pad = 0;
	__u16 family = 0;
	e->local_port = 0;
	e->remote_port = 0;
	__builtin_memset(e->local_ip, 0, sizeof(e->local_ip));
	__builtin_memset(e->remote_ip, 0, sizeof(e->remote_ip));
	sock_endpoints(sk, &family, &e->local_port, &e->remote_port, e->local_ip, e->remote_ip);
	e->family = family;
	e->bytes_received = 0;
	e->bytes_acked = 0;
	if (kind == CONN_CLOSE) {
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;
		e->bytes_received = BPF_CORE_READ(tp, bytes_received);
		e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	}
	bpf_ringbuf_submit(e, wakeup_flags());
}

// Connections established before the agent attached, which it found in
// /proc, by their endpoints as the socket holds them; filled by user space
// so that their close is reported too.
struct conn_ends {
	__u16 family;
	__u16 local_port;
	__u16 remote_port;
	__u16 pad;
	__u8 local_ip[16];
	__u8 remote_ip[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_ends);
	__type(value, struct conn_owner);
} adopted_conns SEC(".maps");

// Reports the close of a connection from before the agent, if it is one.
static __always_inline void close_adopted(const struct sock *sk)
{
	struct conn_ends k = {};
	sock_endpoints(sk, &k.family, &k.local_port, &k.remote_port, k.local_ip, k.remote_ip);
	struct conn_owner *o = bpf_map_lookup_elem(&adopted_conns, &k);
	if (!o)
		return;
	struct conn_owner c = *o;
	bpf_map_delete_elem(&adopted_conns, &k);
	emit_conn(sk, &c, CONN_CLOSE);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (!bpf_map_lookup_elem(&conn_tgids, &tgid))
			return 0;
		struct conn_owner o = {.tgid = tgid, .role = CONN_CLIENT};
		bpf_map_update_elem(&conn_owners, &key, &o, BPF_ANY);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		struct conn_owner *o = bpf_map_lookup_elem(&conn_owners, &key);
		if (oldstate == TCP_SYN_SENT && o) {
			emit_conn(sk, o, CONN_OPEN);
			return 0;
		}
		if (oldstate != TCP_SYN_RECV)
			return 0;
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
		__u32 *tgid = bpf_map_lookup_elem(&traced_ports, &port);
		if (!tgid)
			return 0;
		struct conn_owner n = {.tgid = *tgid, .role = CONN_SERVER};
		bpf_map_update_elem(&conn_owners, &key, &n, BPF_ANY);
		emit_conn(sk, &n, CONN_OPEN);
		return 0;
	}
	if (newstate == TCP_CLOSE) {
		struct conn_owner *o = bpf_map_lookup_elem(&conn_owners, &key);
		if (!o) {
			close_adopted(sk);
			return 0;
		}
		struct conn_owner c = *o;
		bpf_map_delete_elem(&conn_owners, &key);
		emit_conn(sk, &c, CONN_CLOSE);
	}
	return 0;
}

// A connection accepted by a traced process is its own, whoever the
// listening port was registered to: the workers of a pre-forking server
// (gunicorn, nginx, PostgreSQL) share one listening socket. The open
// reported at ESTABLISHED, by port, is corrected here when it named
// another process, and reported here when no traced port matched (a
// listening socket inherited or passed on). Attached with the other syscall
// tracepoints, when a program is traced from the kernel.
static __always_inline void accepted(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (ctx->ret < 0 || !bpf_map_lookup_elem(&conn_tgids, &tgid))
		return;
	const struct sock *sk = fd_sock((__s32)ctx->ret);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	__u64 key = (__u64)sk;
	struct conn_owner *o = bpf_map_lookup_elem(&conn_owners, &key);
	if (o && o->tgid == tgid)
		return;
	struct conn_owner n = {.tgid = tgid, .role = CONN_SERVER};
	bpf_map_update_elem(&conn_owners, &key, &n, BPF_ANY);
	emit_conn(sk, &n, CONN_OPEN);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx);
	return 0;
}

// ---------------------------------------------------------------------------
// Byte counts of the open connections, on demand: user space reads this
// iterator over every TCP socket of the host when it is asked for the
// connection table, and gets one record per followed connection.

struct conn_bytes {
	__u64 sock;
	__u64 bytes_received;
	__u64 bytes_acked;
	struct conn_ends ends; // set for a connection from before the agent
	__u32 tgid;
	__u32 pad;
};

SEC("iter/tcp")
int conn_bytes(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0; // a request or time-wait socket: no connection yet, or no more
	const struct sock *sk = (const struct sock *)tp;
	__u64 key = (__u64)sk;
	struct conn_bytes b = {.sock = key};
	struct conn_owner *o = bpf_map_lookup_elem(&conn_owners, &key);
	if (!o) {
		sock_endpoints(sk, &b.ends.family, &b.ends.local_port, &b.ends.remote_port, b.ends.local_ip,
			       b.ends.remote_ip);
		o = bpf_map_lookup_elem(&adopted_conns, &b.ends);
		if (!o)
			return 0;
	}
	b.tgid = o->tgid;
	b.bytes_received = BPF_CORE_READ(tp, bytes_received);
	b.bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	bpf_seq_write(ctx->meta->seq, &b, sizeof(b));
	return 0;
}

// ---------------------------------------------------------------------------
// Children. A process traced from the kernel that forks (a server that
// forks per connection, as busybox httpd and inetd-style servers do; a
// pre-forking master replacing a worker) has its child traced from the
// fork on, and user space is told, so that the child's records are its
// own. Threads are not children. A child is forgotten when it exits; so is
// the exit of any process traced from the kernel reported, so that user
// space drops what it held for it.

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
