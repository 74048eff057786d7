// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Which processes are traced from the kernel, which of their descriptors
// carried a recognised protocol, and what a descriptor's socket is: shared
// by the read/write programs (io.h), the connections (conns.h) and the
// fork/exit tracepoints (tasks.h).
#pragma once

#include "common/kernel.h"
#include "common/maps.h"
#include "syscalls/records.h"
#include <bpf/bpf_endian.h>

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
	// The request being answered (read: FD_NEXT_READ, then
	// FD_RESPONDING), or made (written: neither), is a call to a model
	// API (http.h, looks_like_genai): every read or write of its bodies
	// goes to user space with its first and last bytes, within the call's
	// budget (genai.h), so that the stream's events can be read.
	FD_GENAI = 1 << 7,
};

// errno values the programs tell apart (vmlinux.h has no macros).
#define E2BIG 7

static __always_inline bool traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced_tgids, &tgid) != NULL;
}

// Processes whose connections are followed (every selected process, Go or
// not, and the children in traced_tgids), by tgid; filled by user space and
// the fork tracepoint, with traced_how values.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} conn_tgids SEC(".maps");

// The fast filter in front of the maps above: one bit per thread-group id,
// 64 tgids a word, in a global array (pid_max is at most 2^22). Testing a
// bit is one load with no helper call, which is all that a syscall of a
// process nobody traces pays beyond the tracepoint itself (a hash lookup
// costs about 70 ns more). A bit is set before its map entry is added and
// cleared after it is removed, so a process in a map always has its bit;
// the handlers still check the map, which stays the authority.
//
// Each word has one writer per kind of bit, and every change is an atomic
// add of +/- the bit (the one atomic the 5.10 verifier accepts): user space
// adds the bits of processes it selects and the fork tracepoint those of
// children, each once, after winning the map insert (BPF_NOEXIST); whoever
// deletes a map entry (the exit tracepoint, or user space for a process it
// selected that was gone before it was added) takes the bit away.
struct tgid_word {
	__u64 kernel;   // selected by user space: traced from the kernel (traced_tgids)
	__u64 conns;    // selected by user space: connections followed (conn_tgids)
	__u64 children; // forked by a process traced from the kernel (both maps)
	__u64 pad;
};

#define TGID_WORDS (1 << 16)

struct tgid_word tgid_bits[TGID_WORDS];

static __always_inline struct tgid_word *word_of(__u32 tgid)
{
	return &tgid_bits[(tgid >> 6) & (TGID_WORDS - 1)];
}

static __always_inline __u64 tgid_bit(__u32 tgid)
{
	return 1ULL << (tgid & 63);
}

// Whether tgid may be traced from the kernel (traced_tgids).
static __always_inline bool kernel_traced(__u32 tgid)
{
	struct tgid_word *w = word_of(tgid);
	return (w->kernel | w->children) & tgid_bit(tgid);
}

// Whether tgid's connections may be followed (conn_tgids).
static __always_inline bool conns_followed(__u32 tgid)
{
	struct tgid_word *w = word_of(tgid);
	return (w->conns | w->children) & tgid_bit(tgid);
}

// Whether tgid may be in either map.
static __always_inline bool followed(__u32 tgid)
{
	struct tgid_word *w = word_of(tgid);
	return (w->kernel | w->conns | w->children) & tgid_bit(tgid);
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
