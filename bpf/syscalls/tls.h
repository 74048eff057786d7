// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising a TLS ClientHello from the first bytes of a write, and
// remembering which TLS socket each thread used last.
#pragma once

// Does a write start like a TLS ClientHello: a handshake record (0x16) of
// TLS 1.0-1.3 whose message is a ClientHello (1)?
static __always_inline bool looks_like_tls_client_hello(const char p[16], __s64 len)
{
	return len >= 9 && p[0] == 0x16 && p[1] == 0x03 && (__u8)p[2] <= 0x04 && p[5] == 0x01;
}

// The descriptor of the TLS socket each thread of a process traced from
// the kernel read or wrote last (FD_TLS), by pid_tgid. A TLS library that
// does its socket I/O through memory buffers (Node's, curl's own BIO) does
// not know its descriptor: the plaintext probes (bpf/openssl) take the
// socket the thread used just before (a read) or around (a write).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __s32);
} tls_threads SEC(".maps");

// A read or write of a TLS socket's ciphertext, by thread id.
static __always_inline void tls_socket_used(__u64 id, __s32 fd)
{
	__s32 *last = bpf_map_lookup_elem(&tls_threads, &id);
	if (last && *last == fd)
		return;
	bpf_map_update_elem(&tls_threads, &id, &fd, BPF_ANY);
}
