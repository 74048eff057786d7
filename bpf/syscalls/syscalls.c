// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// HTTP/1.x and database protocols of any process, from its socket reads and
// writes: the raw syscall tracepoints (no uprobes, no kprobes), for the
// processes user space lists in traced_tgids.
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
// not listed costs a test of one bit. A marked descriptor is remembered until
// it is closed, so that user space learns about the close.
//
// The read right after one that started a request is sent whatever it
// holds, so that a head that arrived in pieces is complete in user space.
//
// It also follows the TCP connections of those processes (see below).
//
// readv/writev and recvmsg/sendmsg are seen through their first buffer.
// Not covered yet: recvmmsg/sendmmsg, io_uring, and what is inside TLS.

// The programs are in one object, split by concern: traced.h (which
// processes and descriptors), one header per recognised protocol (http.h,
// postgres.h, mysql.h, redis.h, tls.h), io.h (the read, write and close
// handlers), conns.h (connections), dispatch.h (the syscalls seen, and the
// sys_enter/sys_exit programs calling the handlers) and tasks.h (fork and
// exit).

#include "syscalls/traced.h"
#include "syscalls/io.h"
#include "syscalls/conns.h"
#include "syscalls/dispatch.h"
#include "syscalls/tasks.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The records, and the other structs and enums user space reads, in BTF for
// bpf2go -type (probes/syscalls/gen.go); never used.
struct sock_data_event *unused_sock_data_event __attribute__((unused));
struct conn_event *unused_conn_event __attribute__((unused));
struct task_event *unused_task_event __attribute__((unused));
enum syscalls_record *unused_syscalls_record __attribute__((unused));
enum sock_dir *unused_sock_dir __attribute__((unused));
enum sock_proto *unused_sock_proto __attribute__((unused));
enum sock_data_flags *unused_sock_data_flags __attribute__((unused));
enum conn_kind *unused_conn_kind __attribute__((unused));
enum conn_role *unused_conn_role __attribute__((unused));
enum task_kind *unused_task_kind __attribute__((unused));
enum traced_how *unused_traced_how __attribute__((unused));
enum genai_loss *unused_genai_loss __attribute__((unused));
struct open_conn_bytes *unused_open_conn_bytes __attribute__((unused));
struct tgid_word *unused_tgid_word __attribute__((unused));
