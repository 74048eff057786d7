// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The read, write and close handlers: the descriptors of traced processes
// that carry a recognised protocol go to user space, with their data. The
// syscall dispatcher (dispatch.h) calls them.
#pragma once

#include "syscalls/traced.h"
#include "syscalls/http.h"
#include "syscalls/postgres.h"
#include "syscalls/redis.h"
#include "syscalls/tls.h"
#include "syscalls/mysql.h"
#include "syscalls/genai.h"

// The record type of the sock_data_events these handlers make. The TLS
// plaintext probes (bpf/openssl) run the same handlers on the bytes a TLS
// library reads and writes, under a type of their own.
#ifndef SOCK_DATA_RECORD
#define SOCK_DATA_RECORD EVENT_SOCK_DATA
#endif

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

// Where a read or write ends, when it is not simply buf + len (readv and
// writev): its length in all, and its last buffer's bytes [base, end);
// partial when those do not cover all of it.
struct io_end {
	__u64 total;
	__u64 base, end;
	__u8 partial;
	__u8 pad[7];
};

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
	// Of a model call's response (genai): its first buffer, whose first
	// bytes go to user space.
	__u64 first, first_len;
	__s32 fd;
	__u8 partial;
	__u8 genai;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); // pid_tgid
	__type(value, struct pending_body);
} pending_bodies SEC(".maps");

static __always_inline void body_enter(__u64 id, __s32 fd, __u64 total, __u64 base, __u64 last, __u8 partial,
				       __u64 first, __u64 first_len)
{
	struct pending_body b = {.total = total,
				 .base = base,
				 .last = last,
				 .fd = fd,
				 .partial = partial,
				 .first = first,
				 .first_len = first_len,
				 .genai = first != 0};
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
	fill_header(&e->hdr, SOCK_DATA_RECORD);
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

// The last n bytes before end of a model call's segment of len bytes, in a
// record of dir (SOCK_DIR_READ_TAIL, SOCK_DIR_WRITE_TAIL) sent just before
// the segment's own.
static __always_inline void emit_genai_tail(__u64 id, __s32 fd, __u8 dir, __u64 end, __u64 n, __u64 len)
{
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, SOCK_DATA_RECORD);
	e->tid = (__u32)id;
	e->fd = fd;
	e->len = len > 0xffffffff ? 0xffffffff : len;
	e->dir = dir;
	e->proto = SOCK_PROTO_HTTP;
	e->flags = 0;
	fill_tail(e, 0, 0);
	fd_socket(e, fd, false);
	if (n > SOCK_DATA_MAX)
		n = SOCK_DATA_MAX;
	barrier_var(n);
	if (n > SOCK_DATA_MAX)
		n = SOCK_DATA_MAX;
	e->cap = 0;
	if (n > 0 && !bpf_probe_read_user(e->data, n, (void *)(end - n)))
		e->cap = n;
	bpf_ringbuf_submit(e, wakeup_flags());
}

// What genai_segment's last argument carries besides the descriptor: flags
// (bits 56-63), the direction (48-55) and how many bytes before last are
// its last buffer's (32-47, at most 65535).
enum genai_seg_flags {
	GENAI_SEG_RESPONSE = 1 << 0, // the response's side (its budget)
	GENAI_SEG_START = 1 << 1,    // the request's head: the budgets are whole again
	GENAI_SEG_ENDS = 1 << 2,     // the descriptor's first record: with its endpoints
	GENAI_SEG_PARTIAL = 1 << 3,  // SOCK_FLAG_PARTIAL
	GENAI_SEG_NO_TAIL = 1 << 4,  // where it ends is not known: no tail
	GENAI_SEG_BODY = 1 << 5,     // its first bytes are body, the budget's to allow
};

// A read or write of a model call (FD_GENAI): a record with its first bytes
// (a body's within its budget) and, when longer, one before it with its
// last bytes (genai.h). A global function: the verifier checks it once,
// apart from the paths that lead to it, which then cost no more than
// before; it takes scalars only, five at most, hence the packing:
//
//	id    pid_tgid
//	src   where its first bytes are
//	last  where its last buffer ends
//	lens  its length in all (high 32 bits), the bytes at src (low 32)
//	meta  fd (low 32 bits), then as enum genai_seg_flags says
__attribute__((noinline)) int genai_segment(__u64 id, __u64 src, __u64 last, __u64 lens, __u64 meta)
{
	__s32 fd = (__s32)(meta & 0xffffffff);
	__u64 avail = (meta >> 32) & 0xffff;
	__u8 dir = (meta >> 48) & 0xff;
	__u8 f = meta >> 56;
	__u64 total = lens >> 32;
	__u64 len = lens & 0xffffffff;
	bool response = f & GENAI_SEG_RESPONSE;
	struct fd_key k = {.tgid = id >> 32, .fd = fd};
	if (f & GENAI_SEG_START)
		genai_start(&k);
	__u64 n = len > SOCK_DATA_MAX ? SOCK_DATA_MAX : len;
	if (f & GENAI_SEG_BODY)
		n = genai_take(&k, response, n);
	__u64 tn = 0;
	if (!(f & GENAI_SEG_NO_TAIL) && total > SOCK_DATA_MAX) {
		tn = total - SOCK_DATA_MAX;
		if (tn > SOCK_DATA_MAX)
			tn = SOCK_DATA_MAX;
		if (tn > avail)
			tn = avail;
		// A request's tail is not charged: its last one is where the
		// model's name is found when the prompt comes first.
		if (response)
			tn = genai_take(&k, true, tn);
	}
	genai_lost(total > n + tn ? total - n - tn : 0);
	bool reading = dir == SOCK_DIR_READ || dir == SOCK_DIR_READ_MORE || dir == SOCK_DIR_READ_BODY;
	if (tn)
		emit_genai_tail(id, fd, reading ? SOCK_DIR_READ_TAIL : SOCK_DIR_WRITE_TAIL, last, tn, total);
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, SOCK_DATA_RECORD);
	e->tid = (__u32)id;
	e->fd = fd;
	e->len = total;
	e->dir = dir;
	e->proto = SOCK_PROTO_HTTP;
	e->flags = (f & GENAI_SEG_PARTIAL) ? SOCK_FLAG_PARTIAL : 0;
	// Its end, for the framing.
	if (f & GENAI_SEG_NO_TAIL)
		fill_tail(e, 0, 0);
	else
		fill_tail(e, last - avail, last);
	fd_socket(e, fd, f & GENAI_SEG_ENDS);
	barrier_var(n);
	if (n > SOCK_DATA_MAX)
		n = SOCK_DATA_MAX;
	e->cap = 0;
	if (n > 0 && !bpf_probe_read_user(e->data, n, (void *)src))
		e->cap = n;
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

// Calls genai_segment for a segment of total bytes in all, len of them at
// src, whose last buffer is [base, last).
static __always_inline void genai_call(__u64 id, __s32 fd, __u8 dir, __u64 src, __u64 len, __u64 total, __u64 base,
				       __u64 last, __u8 flags)
{
	if (len > 0xffffffff)
		len = 0xffffffff;
	if (total > 0xffffffff)
		total = 0xffffffff;
	__u64 avail = last > base ? last - base : 0;
	if (avail > 0xffff)
		avail = 0xffff;
	genai_segment(id, src, last, total << 32 | len,
		      (__u64)(__u32)fd | avail << 32 | (__u64)dir << 48 | (__u64)flags << 56);
}

// A write of a model call's response body (its exit: total bytes went), as
// emit_body with the first bytes of its first buffer and its last ones
// (genai_segment).
static __always_inline void emit_genai_body(__u64 id, __s32 fd, __u64 total, const struct pending_body *b)
{
	__u8 f = GENAI_SEG_RESPONSE | GENAI_SEG_BODY;
	if (b->partial)
		f |= GENAI_SEG_PARTIAL;
	// Its end is its last buffer's only when it sent all it asked.
	if (b->partial || total < b->total)
		f |= GENAI_SEG_NO_TAIL;
	__u64 len = total < b->first_len ? total : b->first_len;
	genai_call(id, fd, SOCK_DIR_WRITE_BODY, b->first, len, total, b->base, b->last, f);
}

// A read or write of a model call (FD_GENAI; dir as emit chose it).
// start: its request head; ends: the descriptor's first record.
static __always_inline void emit_genai(__u64 id, __s32 fd, __u64 buf, __u64 len, __u8 dir, const struct io_end *end,
				       bool response, bool start, bool ends)
{
	__u8 f = 0;
	if (response)
		f |= GENAI_SEG_RESPONSE;
	if (start)
		f |= GENAI_SEG_START;
	if (ends)
		f |= GENAI_SEG_ENDS;
	if (dir == SOCK_DIR_READ_MORE || dir == SOCK_DIR_WRITE_MORE || dir == SOCK_DIR_READ_BODY)
		f |= GENAI_SEG_BODY;
	if (end && end->partial)
		f |= GENAI_SEG_PARTIAL | GENAI_SEG_NO_TAIL;
	__u64 total = end ? end->total : len;
	__u64 base = end ? end->base : buf;
	__u64 last = end ? end->end : buf + len;
	genai_call(id, fd, dir, buf, len, total, base, last, f);
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
	// Of a model call (FD_GENAI): whether it starts here (its request
	// head), and whether this is its response's side.
	bool genai_new = false, response = false;
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
		tls_socket_used(id, fd);
		return;
	} else if (looks_like_http(head)) {
		// A request read: watch the next read. A response, or a
		// write, ends that. A response: follow its body.
		proto = SOCK_PROTO_HTTP;
		flags = FD_HTTP;
		response = head[0] == 'H';
		if (dir == SOCK_DIR_READ && !response)
			flags |= FD_NEXT_READ;
		// A model call, read (served) or written (made).
		if (!response && looks_like_genai(head)) {
			flags |= FD_GENAI;
			genai_new = true;
		}
		// (Not after a 101: what follows is another protocol.) The
		// answer to a model call keeps its mark: the server's writes
		// of it, or the client's reads, are its body.
		if (response && dir == SOCK_DIR_WRITE && !(head[9] == '1' && head[10] == '0' && head[11] == '1'))
			flags |= FD_RESPONDING | (was & FD_GENAI);
		if (response && dir == SOCK_DIR_READ)
			flags |= was & FD_GENAI;
	} else if ((was & FD_NEXT_READ) && dir == SOCK_DIR_READ) {
		proto = SOCK_PROTO_HTTP;
		// A model call's request body: every read of it, until the
		// response (user space needs its last read's tail).
		flags = FD_HTTP | (was & FD_GENAI) | ((was & FD_GENAI) ? FD_NEXT_READ : 0);
		dir = SOCK_DIR_READ_MORE;
	} else if ((was & FD_RESPONDING) && dir == SOCK_DIR_WRITE) {
		// A model call's body: its first buffer's bytes too.
		__u64 first = (was & FD_GENAI) ? buf : 0;
		if (end)
			body_enter(id, fd, end->total, end->base, end->end, end->partial, first, len);
		else
			body_enter(id, fd, len, buf, buf + len, 0, first, len);
		return;
	} else if ((was & FD_GENAI) && !(was & (FD_NEXT_READ | FD_RESPONDING))) {
		// A model call this process makes (its request was written):
		// its request body's writes, then its response body's reads.
		proto = SOCK_PROTO_HTTP;
		flags = was;
		response = dir != SOCK_DIR_WRITE;
		dir = response ? SOCK_DIR_READ_BODY : SOCK_DIR_WRITE_MORE;
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
		tls_socket_used(id, fd);
	} else if (looks_like_mysql_command(head, len)) {
		proto = SOCK_PROTO_MYSQL;
		flags = FD_MYSQL;
	} else {
		return;
	}
	if (flags & FD_GENAI) {
		// A model call's segment: records of its own (genai.h).
		emit_genai(id, fd, buf, len, dir, end, response, genai_new, !was);
		if (flags != was)
			bpf_map_update_elem(&sock_fds, &k, &flags, BPF_ANY);
		return;
	}
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, SOCK_DATA_RECORD);
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

// The handlers below run from the syscall dispatcher (dispatch.h), for
// processes whose bit is set in tgid_bits; id is the current pid_tgid, and
// the arguments are the syscall's.

// read, recvfrom: where the data will be, for the exit.
static __always_inline void read_enter(__u64 id, __s32 fd, __u64 buf, __u64 cap)
{
	if (!traced(id >> 32))
		return;
	struct pending_read r = {.fd = fd, .buf = buf, .cap = cap};
	bpf_map_update_elem(&pending_reads, &id, &r, BPF_ANY);
}

// The exit of read, recvfrom, readv and recvmsg: ret bytes arrived.
static __always_inline void read_exit(__u64 id, __s64 ret)
{
	struct pending_read *r = bpf_map_lookup_elem(&pending_reads, &id);
	if (!r)
		return;
	struct pending_read rd = *r;
	bpf_map_delete_elem(&pending_reads, &id);
	__s64 n = ret;
	if (n > 0 && (__u64)n > rd.cap)
		n = rd.cap;
	emit(id, rd.fd, rd.buf, n, SOCK_DIR_READ, NULL);
}

// write, sendto.
static __always_inline void write_enter(__u64 id, __s32 fd, __u64 buf, __s64 len)
{
	if (!traced(id >> 32))
		return;
	emit(id, fd, buf, len, SOCK_DIR_WRITE, NULL);
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

// readv, and recvmsg through its msghdr: the first buffer of iov.
static __always_inline void readv_enter(__u64 id, __s32 fd, __u64 iov)
{
	if (!traced(id >> 32))
		return;
	__u64 base, len;
	if (!first_iov(iov, &base, &len))
		return;
	struct pending_read r = {.fd = fd, .buf = base, .cap = len};
	bpf_map_update_elem(&pending_reads, &id, &r, BPF_ANY);
}

// Buffers of a writev or sendmsg read at once: enough for the head, body
// and chunk framing that servers write together.
#define WRITEV_SEEN 8

// writev, and sendmsg through its msghdr.
static __always_inline void writev_enter(__u64 id, __s32 fd, __u64 iov, __u64 count)
{
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
	emit(id, fd, (__u64)v[0].iov_base, (__s64)v[0].iov_len, SOCK_DIR_WRITE, &end);
}

// The exit of a write of a response's body (write, sendto, writev,
// sendmsg, sendfile): the bytes that went. A write that sent only part of
// what it asked did not reach its end, so its tail is not the response's.
static __always_inline void body_exit(__u64 id, __s64 ret)
{
	struct pending_body *p = bpf_map_lookup_elem(&pending_bodies, &id);
	if (!p)
		return;
	struct pending_body b = *p;
	bpf_map_delete_elem(&pending_bodies, &id);
	if (ret <= 0)
		return;
	if (b.genai)
		emit_genai_body(id, b.fd, ret, &b);
	else if ((__u64)ret < b.total)
		emit_body(id, b.fd, ret, 0, 0, false);
	else
		emit_body(id, b.fd, ret, b.base, b.last, b.partial);
}

// sendfile on a descriptor writing a response's body (a file server's,
// nginx's): the bytes it sent are more of the body. File bytes: no chunk
// framing to find at their end.
static __always_inline void sendfile_enter(__u64 id, __s32 fd)
{
	struct fd_key k = {.tgid = id >> 32, .fd = fd};
	__u8 *f = bpf_map_lookup_elem(&sock_fds, &k);
	if (f && (*f & FD_RESPONDING))
		body_enter(id, k.fd, 0, 0, 0, 0, 0, 0);
}

// close of a descriptor that carried a recognised protocol: user space is
// told, and forgets it.
static __always_inline void close_enter(__u64 id, __s32 fd)
{
	struct fd_key k = {.tgid = id >> 32, .fd = fd};
	if (!bpf_map_lookup_elem(&sock_fds, &k))
		return;
	bpf_map_delete_elem(&sock_fds, &k);
	emit_short(id, k.fd, SOCK_DIR_CLOSE, 0, 0, 0, 0, 0);
}
