// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// What the net/http server and client records share.
#pragma once

#define HTTP_METHOD_MAX 16
#define HTTP_PATH_MAX 256
#define HTTP_QUERY_MAX 256
#define HTTP_HOST_MAX 128
#define HTTP_PATTERN_MAX 128
#define HTTP_REMOTE_MAX 64
#define HTTP_TRACESTATE_MAX 256

// Which strings of an http_server_event were truncated.
enum http_truncation {
	HTTP_TRUNC_METHOD = 1 << 0,
	HTTP_TRUNC_PATH = 1 << 1,
	HTTP_TRUNC_QUERY = 1 << 2,
	HTTP_TRUNC_HOST = 1 << 3,
	HTTP_TRUNC_PATTERN = 1 << 4,
	HTTP_TRUNC_REMOTE = 1 << 5,
};
