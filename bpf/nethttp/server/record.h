// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The record of the net/http server probe (probes/nethttp/server decodes it).
#pragma once

#include "common/event.h"
#include "nethttp/record.h"

// Its type in event_header.
enum http_server_record {
	EVENT_HTTP_SERVER = 1,
};

// Bits of http_server_event.info.
enum http_server_info {
	// The ResponseWriter was one the probe knows (net/http's HTTP/1.x
	// *response, an HTTP/2 responseWriter), so status and written were read
	// from it.
	HTTP_INFO_RESPONSE_KNOWN = 1 << 0,
	// The connection carries TLS.
	HTTP_INFO_TLS = 1 << 1,
	// local_ip/local_port were read from the connection.
	HTTP_INFO_LOCAL_ADDR = 1 << 2,
	// The request carried a valid traceparent: ids.trace_id and
	// ids.parent_id come from it.
	HTTP_INFO_REMOTE_PARENT = 1 << 3,
	// A tracestate was present but longer than HTTP_TRACESTATE_MAX: it is
	// dropped, as W3C allows, rather than cut.
	HTTP_INFO_TRACESTATE_DROPPED = 1 << 4,
	// The handler panicked: net/http closed the connection and sent no
	// response (or only what the handler had flushed).
	HTTP_INFO_PANICKED = 1 << 5,
	// The handler hijacked the connection; the span ends when it returned.
	HTTP_INFO_HIJACKED = 1 << 6,
};

// One request served by a Go net/http server, sent once its response has
// been written (HTTP/1.x), its handler returned (HTTP/2, a hijacked
// connection) or panicked.
struct http_server_event {
	struct event_header hdr; // hdr.ts_ns is when serving ended
	__u64 start_ns;          // when serving began (CLOCK_MONOTONIC)
	__u64 goid;              // goroutine that served the request
	struct span_ids ids;
	__s64 content_length;    // Request.ContentLength (-1 when unknown)
	__s64 resp_written;      // body bytes the handler wrote (HEAD: discarded)
	__u16 status;            // response status, 0 when not written yet
	__u8 proto_major;
	__u8 proto_minor;
	__u16 local_port;
	__u8 local_ip_len;       // 4, 16 or 0
	__u8 info;               // enum http_server_info
	__u8 local_ip[16];
	__u16 method_len;
	__u16 path_len;
	__u16 query_len;
	__u16 host_len;
	__u16 pattern_len;
	__u16 remote_len;
	__u16 tracestate_len;
	__u8 truncated; // enum http_truncation
	__u8 pad[1];
	char method[HTTP_METHOD_MAX];
	char path[HTTP_PATH_MAX];
	char query[HTTP_QUERY_MAX];
	char host[HTTP_HOST_MAX];
	char pattern[HTTP_PATTERN_MAX];
	char remote[HTTP_REMOTE_MAX];
	char tracestate[HTTP_TRACESTATE_MAX];
};
