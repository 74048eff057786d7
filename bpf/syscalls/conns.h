// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Connections: every TCP connection of a traced process, with its role,
// endpoints, open and close times and bytes each way.
//
// inet_sock_set_state often runs in softirq context, where the current task
// is not the connection's owner. A client connection is recognised at
// CLOSE -> SYN_SENT, which runs in the connecting process (connect()); a
// server connection by its local port, which user space lists for the
// ports traced processes listen on. The owner is then remembered by socket.
#pragma once

#include "syscalls/traced.h"

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
		if (!conns_followed(tgid) || !bpf_map_lookup_elem(&conn_tgids, &tgid))
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
// listening socket inherited or passed on). Called by the syscall
// dispatcher at the exit of accept and accept4 (ret: the new descriptor),
// which runs only when a program is traced from the kernel.
static __always_inline void accepted(__u32 tgid, __s64 ret)
{
	if (ret < 0 || !bpf_map_lookup_elem(&conn_tgids, &tgid))
		return;
	const struct sock *sk = fd_sock((__s32)ret);
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

// Byte counts of the open connections, on demand: user space reads this
// iterator over every TCP socket of the host when it is asked for the
// connection table, and gets one record per followed connection.

struct open_conn_bytes {
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
	struct open_conn_bytes b = {.sock = key};
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
