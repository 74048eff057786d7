// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Owner of the shared maps, and the one place that puts every ring-buffer
// record type into BTF so that bpf2go generates their Go twins.

#include "common/kernel.h"
#include "common/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Referenced so that the types reach BTF; never used.
struct event_header *unused_event_header __attribute__((unused));
struct http_server_event *unused_http_server_event __attribute__((unused));
struct http_client_event *unused_http_client_event __attribute__((unused));
struct db_query_event *unused_db_query_event __attribute__((unused));
struct sock_data_event *unused_sock_data_event __attribute__((unused));
struct conn_event *unused_conn_event __attribute__((unused));
struct task_event *unused_task_event __attribute__((unused));
