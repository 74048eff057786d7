// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The record of the net/http client probe (probes/nethttp/client decodes it).
#pragma once

#include "common/event.h"
#include "nethttp/record.h"

// Its type in event_header.
enum http_client_record {
	EVENT_HTTP_CLIENT = 2,
};

#define HTTP_SCHEME_MAX 8

// Bits of http_client_event.info.
enum http_client_info {
	// A *Response came back; status is its StatusCode.
	HTTP_CLIENT_INFO_RESPONSE = 1 << 0,
	// An error came back; err_type is its itab.
	HTTP_CLIENT_INFO_ERROR = 1 << 1,
	// The request went out on a TCP connection: peer_ip/peer_port are set.
	HTTP_CLIENT_INFO_PEER_ADDR = 1 << 2,
};

// One round trip of a Go net/http client (Transport.roundTrip), sent when
// it returns.
struct http_client_event {
	struct event_header hdr; // hdr.ts_ns is when the round trip returned
	__u64 start_ns;
	__u64 goid;
	struct span_ids ids;
	__u64 err_type; // itab of the error returned, to name its type
	__s64 content_length;
	__u16 status;
	__u16 method_len;
	__u16 scheme_len;
	__u16 host_len;
	__u16 path_len;
	__u16 query_len;
	__u8 info;      // enum http_client_info
	__u8 truncated; // enum http_truncation, HOST meaning the URL's host
	__u8 peer_ip_len; // 4 or 16 when HTTP_CLIENT_INFO_PEER_ADDR
	__u8 pad;
	__u8 peer_ip[16]; // the server's address on the connection used
	__u16 peer_port;
	__u8 pad2[6];
	char method[HTTP_METHOD_MAX];
	char scheme[HTTP_SCHEME_MAX];
	char host[HTTP_HOST_MAX];
	char path[HTTP_PATH_MAX];
	char query[HTTP_QUERY_MAX];
};
