// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The records of the kernel-level tracing (probes/syscalls decodes them).
#pragma once

#include "common/event.h"

// Their types in event_header.
enum syscalls_record {
	EVENT_SOCK_DATA = 4,
	EVENT_CONN = 5,
	EVENT_TASK = 6,
};

#define SOCK_DATA_MAX 512

// Direction of a sock_data_event.
enum sock_dir {
	SOCK_DIR_READ = 1,
	SOCK_DIR_WRITE = 2,
	SOCK_DIR_CLOSE = 3, // the descriptor was closed; no data
	// The read after one that started a request, whatever it holds: the
	// rest of a head that arrived in pieces, or a body (every read of a
	// model call's request body, FD_GENAI).
	SOCK_DIR_READ_MORE = 4,
	// A write (or sendfile) after a response head, until the next request
	// is read on the descriptor: more of the response's body. Reported at
	// its exit (hdr.ts_ns), with the bytes it sent and, when it sent all
	// it asked, its tail; no data, except for the answer to a model call
	// (FD_GENAI): the first bytes of its first buffer. User space finds
	// where the response ends from them (a streamed answer lasts until
	// its last chunk).
	SOCK_DIR_WRITE_BODY = 5,
	// The last bytes of a read of a model call's body longer than
	// SOCK_DATA_MAX: a request body's (server side) or a response's
	// (client side). Sent right BEFORE the read's own record (so that
	// user space has them when that record ends the exchange); len is the
	// read's.
	SOCK_DIR_READ_TAIL = 6,
	// A write of a model call's request body after its head, by the
	// process making the call (client side): its first bytes while the
	// request's copy budget lasts (bpf/syscalls/genai.h), len the bytes
	// it asked to send.
	SOCK_DIR_WRITE_MORE = 7,
	// The last bytes of a write of a model call's body longer than
	// SOCK_DATA_MAX (its last buffer's): a request's (client side) or a
	// response's (server side). Sent right before the write's own record;
	// len is the write's.
	SOCK_DIR_WRITE_TAIL = 8,
	// A read of a model call's response body by the process making the
	// call (client side), after the response head: its first bytes while
	// the response's copy budget lasts, and tail, so that user space
	// finds where the stream ends.
	SOCK_DIR_READ_BODY = 9,
};

// Protocol of a sock_data_event's descriptor, recognised from its first
// bytes (bpf/syscalls).
enum sock_proto {
	SOCK_PROTO_HTTP = 1,     // HTTP/1.x, either side
	SOCK_PROTO_POSTGRES = 2, // PostgreSQL frontend/backend protocol, client side
	SOCK_PROTO_REDIS = 3,    // RESP (Redis, Valkey), client side
	SOCK_PROTO_TLS = 4,      // a TLS ClientHello: the one record sent of the connection
	SOCK_PROTO_MYSQL = 5,    // MySQL/MariaDB client/server protocol, client side
};

// sock_data_event flags.
enum sock_data_flags {
	// A PostgreSQL read ends with ReadyForQuery, or a MySQL read with the
	// EOF or OK packet that ends a response (no more results follow): the
	// server is done with everything sent so far, even if the capture
	// stops before that.
	SOCK_FLAG_READY = 1 << 0,
	// len and tail cover only part of the write (a writev or sendmsg with
	// more buffers than the probe looks at).
	SOCK_FLAG_PARTIAL = 1 << 1,
};

// Bytes kept of the end of a read or write (sock_data_event.tail).
#define SOCK_TAIL_MAX 8

// The start of a read or write that looks like HTTP/1.x, or any read or
// write of a descriptor that carries a recognised database protocol, or the
// close of a descriptor that carried either, from syscall tracepoints
// (bpf/syscalls). A close record stops before data.
struct sock_data_event {
	struct event_header hdr; // hdr.ts_ns: when the read returned or the write began
	__u32 tid;
	__s32 fd;
	__u32 len; // bytes read, or bytes the write was asked to send (all its buffers'; see SOCK_FLAG_PARTIAL)
	__u8 dir;  // enum sock_dir
	__u8 proto; // enum sock_proto; 0 for a close
	__u16 cap; // bytes of data captured (at most SOCK_DATA_MAX)
	__u8 flags; // enum sock_data_flags
	__u8 tail_len; // bytes in tail
	// The descriptor's socket, on its first record only (user space keeps
	// them): family (AF_INET, AF_INET6, AF_UNIX; 0 when it is not a socket
	// or could not be read), and for TCP both endpoints (IPv4 in the first
	// 4 bytes, network order; ports in host order).
	__u16 family;
	__u16 local_port;
	__u16 remote_port;
	// Its struct sock's address (0 when fd is not a socket): the same for
	// every descriptor that refers to it (dup, fork), so that a request
	// read on one is paired with the response written on another
	// (inetd-style servers read fd 0 and write fd 1).
	__u64 sock;
	__u8 local_ip[16];
	__u8 remote_ip[16];
	// The last bytes of an HTTP write (of its last buffer, for writev and
	// sendmsg), or of a read of a model call's, wherever the capture
	// stops: the end of a chunked body shows there.
	char tail[SOCK_TAIL_MAX];
	char data[SOCK_DATA_MAX];
};

// What a conn_event reports.
enum conn_kind {
	CONN_OPEN = 1,  // the connection reached ESTABLISHED
	CONN_CLOSE = 2, // it reached CLOSE; bytes are final
};

// Which side of the connection the traced process is.
enum conn_role {
	CONN_CLIENT = 1, // it connected
	CONN_SERVER = 2, // it accepted, on a port it listens on
};

// A TCP connection of a traced process opening or closing, from the
// sock:inet_sock_set_state tracepoint (bpf/syscalls). hdr.pid is the
// traced process, whatever context the transition ran in.
struct conn_event {
	struct event_header hdr;
	__u64 sock; // the socket's address, pairing open and close
	__u64 bytes_received;
	__u64 bytes_acked; // bytes sent and acknowledged
	__u8 kind;   // enum conn_kind
	__u8 role;   // enum conn_role
	__u8 family; // AF_INET or AF_INET6
	__u8 pad;
	__u16 local_port;
	__u16 remote_port;
	__u8 local_ip[16]; // IPv4 in the first 4 bytes
	__u8 remote_ip[16];
};

// What a task_event reports.
enum task_kind {
	TASK_FORK = 1, // a traced process made a child, which is traced from now on
	TASK_EXIT = 2, // a process traced from the kernel exited
};

// A process traced from the kernel forked or exited (bpf/syscalls).
// hdr.pid is the child, or the process that exited.
struct task_event {
	struct event_header hdr;
	__u32 parent; // for a fork: the traced process that forked
	__u8 kind;    // enum task_kind
	__u8 pad[3];
};
