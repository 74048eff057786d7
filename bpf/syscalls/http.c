// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// HTTP/1.x of any process, from its socket reads and writes: syscall
// tracepoints (no uprobes, no kprobes), for the processes user space lists
// in traced_tgids.
//
// A read (read, recvfrom) whose data starts like an HTTP/1.x request or
// response, and a write (write, sendto) whose data does, go to user space
// with their first SOCK_DATA_MAX bytes, the file descriptor and the time;
// user space pairs requests with responses per descriptor and builds the
// spans. Everything else (files, pipes, the rest of a body) costs one map
// lookup and a 16-byte read at most, and a process not listed costs one map
// lookup. A descriptor that carried HTTP is remembered until it is closed,
// so that user space learns about the close.
//
// The read right after one that started a request is sent whatever it
// holds, so that a head that arrived in pieces is complete in user space.
//
// Not covered yet: readv/writev, recvmsg/sendmsg and sendfile (Node and
// some servers use them), and TLS.

#include "common/kernel.h"
#include "common/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Processes to trace, by thread-group id; filled by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} traced_tgids SEC(".maps");

// A read in progress: where its data goes.
struct pending_read {
	__u64 buf;
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

// Descriptors that carried HTTP, to report their close.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, __u8); // enum fd_flags
} http_fds SEC(".maps");

enum fd_flags {
	FD_HTTP = 1 << 0,
	// The last read started a request: the next read goes to user space
	// too, whatever it holds, in case the head goes on there (a request
	// that arrived in pieces).
	FD_NEXT_READ = 1 << 1,
};

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

static __always_inline void emit(__u64 id, __s32 fd, __u64 buf, __s64 len, __u8 dir)
{
	if (len <= 0 || !buf)
		return;
	struct fd_key k = {.tgid = id >> 32, .fd = fd};
	__u8 flags = FD_HTTP;
	char head[16] = {};
	if (bpf_probe_read_user(head, len < 16 ? (__u32)len & 15 : 16, (void *)buf))
		return;
	if (looks_like_http(head)) {
		// A request read: watch the next read. A response, or a
		// write, ends that.
		if (dir == SOCK_DIR_READ && head[0] != 'H')
			flags |= FD_NEXT_READ;
	} else {
		__u8 *f = dir == SOCK_DIR_READ ? bpf_map_lookup_elem(&http_fds, &k) : NULL;
		if (!f || !(*f & FD_NEXT_READ))
			return;
		dir = SOCK_DIR_READ_MORE;
	}
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_SOCK_DATA);
	e->tid = (__u32)id;
	e->fd = fd;
	e->len = len > 0xffffffff ? 0xffffffff : len;
	e->dir = dir;
	e->pad = 0;
	__u32 n = len > SOCK_DATA_MAX ? SOCK_DATA_MAX : len;
	barrier_var(n);
	if (n > SOCK_DATA_MAX)
		n = SOCK_DATA_MAX;
	e->cap = 0;
	if (!bpf_probe_read_user(e->data, n, (void *)buf))
		e->cap = n;
	bpf_ringbuf_submit(e, wakeup_flags());
	bpf_map_update_elem(&http_fds, &k, &flags, BPF_ANY);
}

static __always_inline void read_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return;
	struct pending_read r = {.fd = (__s32)ctx->args[0], .buf = ctx->args[1]};
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
	emit(id, rd.fd, rd.buf, ctx->ret, SOCK_DIR_READ);
}

static __always_inline void write_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return;
	emit(id, (__s32)ctx->args[0], ctx->args[1], (__s64)ctx->args[2], SOCK_DIR_WRITE);
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

SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct fd_key k = {.tgid = id >> 32, .fd = (__s32)ctx->args[0]};
	if (!bpf_map_lookup_elem(&http_fds, &k))
		return 0;
	bpf_map_delete_elem(&http_fds, &k);
	struct sock_data_event *e = bpf_ringbuf_reserve(&events, sizeof(*e) - SOCK_DATA_MAX, 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_SOCK_DATA);
	e->tid = (__u32)id;
	e->fd = k.fd;
	e->len = 0;
	e->dir = SOCK_DIR_CLOSE;
	e->pad = 0;
	e->cap = 0;
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}
