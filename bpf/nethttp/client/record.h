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
	// The request is a call to a model API (a POST to a path in
	// genai_suffixes) on an HTTP/1.x connection: its bytes come in
	// http_client_body records with the same span id, and the span ends
	// when the response's body does.
	HTTP_CLIENT_INFO_GENAI = 1 << 3,
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

// The body record's type in event_header.
enum http_client_body_record {
	EVENT_HTTP_CLIENT_BODY = 16,
};

// Bits of http_client_body.flags.
enum http_client_body_flags {
	// Request bytes, as written (head and body); else response bytes, as
	// read.
	HTTP_BODY_WRITE = 1 << 0,
	// data holds the last bytes of the write or read, not its first:
	// bytes before them were not copied.
	HTTP_BODY_TAIL = 1 << 1,
	// The read returned no byte: the connection ended (EOF or an error).
	HTTP_BODY_EOF = 1 << 2,
	// The bytes of an HTTP/2 connection (the plaintext of a *tls.Conn a
	// model call's stream uses, http_client_h2_stream): conn is the
	// *tls.Conn, offset counts the direction's bytes since the connection
	// was first watched, span_id is zero (the connection's streams are
	// told apart by their frames).
	HTTP_BODY_H2 = 1 << 3,
};

// Bytes a body record holds at most: a read of the connection's buffered
// reader (4 KiB) whole.
#define HTTP_BODY_MAX 4096
// Bytes of a write or read's end sent as a second record when the first
// could not hold it all.
#define HTTP_BODY_TAIL_MAX 1024

// Bytes of an HTTP/2 write or read copied once the budgets are spent: a
// frame header and a little more, so that the framing holds across the
// bytes not copied.
#define HTTP_BODY_H2_MIN 64

// The bytes one write or read of a model call's HTTP/1.x connection
// carried (net/http's persistConn), sent only for connections a model call
// is using (http_body_watch). The record is as long as its data.
struct http_client_body {
	struct event_header hdr;
	__u64 conn;       // the *persistConn
	__u8 span_id[8];  // the round trip's span
	__u64 offset;     // bytes of this direction before this write or read, in this round trip
	__u32 total;      // bytes the write or read carried
	__u16 len;        // bytes in data
	__u8 flags;       // enum http_client_body_flags
	__u8 pad;
	__u8 data[HTTP_BODY_MAX];
};

// The HTTP/2 stream record's type in event_header.
enum http_client_h2_stream_record {
	EVENT_HTTP_CLIENT_H2_STREAM = 17,
};

// Bytes of the request's path an HTTP/2 stream record holds: its end,
// which is what recognises a model API.
#define HTTP_H2_PATH_MAX 64

// A model call's request given an HTTP/2 stream, sent when net/http writes
// its headers (encodeAndWriteHeaders): from then on the connection's
// plaintext comes in http_client_body records flagged HTTP_BODY_H2, and
// the stream's frames in them are the call's.
struct http_client_h2_stream {
	struct event_header hdr;
	__u64 conn;      // the *tls.Conn
	__u8 span_id[8]; // the round trip's span
	__u32 stream_id;
	__u16 path_len;  // bytes in path
	__u8 path_cut;   // path holds the path's last bytes only
	__u8 pad;
	char path[HTTP_H2_PATH_MAX];
};
