// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The plaintext of TLS connections made with OpenSSL (libssl 3.0: Python's
// ssl module, curl) and with the OpenSSL built into Node.js, read where the
// program hands it to the library and gets it back: uprobes on the
// library's read and write functions, for the processes traced from the
// kernel (each attached with its process's PID; probes/openssl finds the
// sites).
//
// The bytes go through the very handlers the socket syscalls use
// (bpf/syscalls/io.h), with the TLS connection's descriptor: what is copied
// and when (request and response heads, the bodies of model calls within
// their budget, a database protocol's messages) is what the kernel path
// copies of a plain connection, and user space feeds the records into that
// connection's stream. This object keeps its own per-descriptor state
// (sock_fds) for the plaintext; the syscalls object's, where the
// ciphertext's descriptor is marked FD_TLS (so that it is not looked at and
// its close is reported), is reached as kernel_fds.
//
// Sites (probes/openssl): libssl's internal ssl_read_internal and
// ssl_write_internal, which SSL_read, SSL_read_ex, SSL_write, SSL_write_ex
// and the SSL BIO all call, found as the target of the first CALL in the
// exported SSL_read_ex and SSL_write_ex; their first instruction is a push,
// which the kernel emulates. Node's binary exports SSL_read and SSL_write,
// whose first instruction is a push too. Each gets an entry uprobe and a
// uretprobe (C frames: a uretprobe is safe here, unlike on Go code).

#include "openssl/record.h"
#define SOCK_DATA_RECORD EVENT_TLS_DATA
#include "syscalls/io.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Where OpenSSL 3.0 keeps a connection's read BIO (struct ssl_st.rbio,
// what SSL_get_rbio reads), a BIO's method (struct bio_st.method) and its
// descriptor (bio_st.num, for descriptor BIOs); set by user space.
volatile const __u32 ssl_rbio_offset = 0x10;
volatile const __u32 bio_method_offset = 0x8;
volatile const __u32 bio_num_offset = 0x38;

// BIO method types (openssl/bio.h): a descriptor BIO (socket, fd, connect,
// accept) is a source/sink with a descriptor in num.
#define BIO_TYPE_DESCRIPTOR 0x0100
#define BIO_TYPE_SOURCE_SINK 0x0400

// The syscalls object's sock_fds (user space passes it in): the
// descriptors the kernel path marked, FD_TLS among them.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, __u8);
} kernel_fds SEC(".maps");

// The descriptor each TLS connection was last found on, by (tgid, SSL*):
// a write through a memory BIO (Node) has its connection's descriptor from
// the reads made before it.
struct ssl_key {
	__u32 tgid;
	__u32 pad;
	__u64 ssl;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ssl_key);
	__type(value, __s32);
} ssl_fds SEC(".maps");

// A read or write in progress, by pid_tgid: its buffer, and where the
// library puts the bytes done (size_t *; 0 when the return value says).
struct ssl_call {
	__u64 buf;
	__u64 outlen;
	__s32 fd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

// The descriptor of a connection's socket: its read BIO's, for a
// descriptor BIO; else the last one found for it, or (a read through a
// memory BIO, whose ciphertext the thread has just read) the TLS socket the
// thread used last. -1 when none is known.
static __always_inline __s32 ssl_fd(__u64 id, __u64 ssl, bool read)
{
	__u64 bio = 0, method = 0;
	__s32 type = 0, fd = -1;
	if (!bpf_probe_read_user(&bio, sizeof(bio), (void *)(ssl + ssl_rbio_offset)) && bio &&
	    !bpf_probe_read_user(&method, sizeof(method), (void *)(bio + bio_method_offset)) && method &&
	    !bpf_probe_read_user(&type, sizeof(type), (void *)method) &&
	    (type & (BIO_TYPE_DESCRIPTOR | BIO_TYPE_SOURCE_SINK)) == (BIO_TYPE_DESCRIPTOR | BIO_TYPE_SOURCE_SINK) &&
	    !bpf_probe_read_user(&fd, sizeof(fd), (void *)(bio + bio_num_offset)) && fd >= 0)
		return fd;
	struct ssl_key k = {.tgid = id >> 32, .ssl = ssl};
	__s32 *last = bpf_map_lookup_elem(&tls_threads, &id);
	__s32 *known = bpf_map_lookup_elem(&ssl_fds, &k);
	if (read && last) {
		fd = *last;
		if (!known || *known != fd)
			bpf_map_update_elem(&ssl_fds, &k, &fd, BPF_ANY);
		return fd;
	}
	if (known)
		return *known;
	if (last)
		return *last;
	return -1;
}

// Readies descriptor fd of the current process for plaintext: a socket
// the kernel path does not know as TLS yet (a server's, whose ClientHello
// it read and did not look at) is marked so, which keeps its ciphertext
// from being looked at and has its close reported; the plaintext state of
// a descriptor the kernel path forgot (it was closed, and its number is
// another connection's now) starts over.
static __always_inline void tls_fd(__u64 id, __s32 fd)
{
	struct fd_key k = {.tgid = id >> 32, .fd = fd};
	__u8 *f = bpf_map_lookup_elem(&kernel_fds, &k);
	if (f && (*f & FD_TLS))
		return;
	bpf_map_delete_elem(&sock_fds, &k);
	__u8 tls = FD_TLS;
	bpf_map_update_elem(&kernel_fds, &k, &tls, BPF_ANY);
}

static __always_inline void call_enter(__u64 ssl, __u64 buf, __u64 outlen, bool read)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call c = {.buf = buf, .outlen = outlen, .fd = ssl_fd(id, ssl, read)};
	if (c.fd >= 0)
		tls_fd(id, c.fd);
	// Kept without a socket too: its return counts what it lost.
	bpf_map_update_elem(&ssl_calls, &id, &c, BPF_ANY);
}

// The bytes a call read or wrote: *outlen when the call returned 1
// (ssl_read_internal, ssl_write_internal), else its return value (SSL_read,
// SSL_write).
static __always_inline __s64 call_bytes(const struct ssl_call *c, __s64 ret)
{
	if (!c->outlen)
		return (__s32)ret;
	__u64 n = 0;
	if ((__s32)ret != 1 || bpf_probe_read_user(&n, sizeof(n), (void *)c->outlen))
		return 0;
	return (__s64)n;
}

// int ssl_read_internal(SSL *s, void *buf, size_t num, size_t *readbytes)
SEC("uprobe/ssl_read_internal")
int read_ex_enter(struct pt_regs *ctx)
{
	call_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx), true);
	return 0;
}

// int SSL_read(SSL *s, void *buf, int num)
SEC("uprobe/SSL_read")
int read_int_enter(struct pt_regs *ctx)
{
	call_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, true);
	return 0;
}

// The return of either read: its bytes, as the socket's read handler takes
// them.
SEC("uretprobe/ssl_read")
int read_return(struct pt_regs *ctx)
{
	__s64 ret = PT_REGS_RC(ctx);
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *p = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!p)
		return 0;
	struct ssl_call c = *p;
	bpf_map_delete_elem(&ssl_calls, &id);
	__s64 n = call_bytes(&c, ret);
	if (n > 0 && c.fd < 0)
		count(COUNTER_TLS_NO_SOCKET);
	else if (n > 0)
		emit(id, c.fd, c.buf, n, SOCK_DIR_READ, NULL);
	return 0;
}

// A write, at its entry, as the socket's write handler takes it.
static __always_inline void ssl_write_enter(__u64 ssl, __u64 buf, __s64 num, __u64 written)
{
	call_enter(ssl, buf, written, false);
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!c || num <= 0)
		return;
	if (c->fd < 0)
		count(COUNTER_TLS_NO_SOCKET);
	else
		emit(id, c->fd, buf, num, SOCK_DIR_WRITE, NULL);
}

// int ssl_write_internal(SSL *s, const void *buf, size_t num, size_t *written)
SEC("uprobe/ssl_write_internal")
int write_ex_enter(struct pt_regs *ctx)
{
	ssl_write_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), (__s64)PT_REGS_PARM3(ctx), PT_REGS_PARM4(ctx));
	return 0;
}

// int SSL_write(SSL *s, const void *buf, int num)
SEC("uprobe/SSL_write")
int write_int_enter(struct pt_regs *ctx)
{
	ssl_write_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), (__s32)PT_REGS_PARM3(ctx), 0);
	return 0;
}

// The return of either write: the bytes that went, for a response body's
// write (body_exit, as at a write syscall's exit).
SEC("uretprobe/ssl_write")
int write_return(struct pt_regs *ctx)
{
	__s64 ret = PT_REGS_RC(ctx);
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *p = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!p)
		return 0;
	struct ssl_call c = *p;
	bpf_map_delete_elem(&ssl_calls, &id);
	__s64 n = call_bytes(&c, ret);
	if (n > 0)
		body_exit(id, n);
	else
		bpf_map_delete_elem(&pending_bodies, &id);
	return 0;
}

// The record type, in BTF for bpf2go -type (probes/openssl/gen.go); never
// used.
enum openssl_record *unused_openssl_record __attribute__((unused));
