// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The header line zerotrace adds to outgoing requests (see bpf/inject/ and
// the net/http client probe): W3C trace context version 00, sampled.
#pragma once
#include "common/maps.h"

// "traceparent: 00-" + 32 hex + "-" + 16 hex + "-01\r\n"
#define TP_PREFIX_LEN 16
#define TP_LINE_LEN 70

static __always_inline char hex_digit(__u8 n)
{
	return n < 10 ? '0' + n : 'a' + n - 10;
}

static __always_inline void format_traceparent_line(char line[TP_LINE_LEN], const struct go_trace_ctx *ctx)
{
	__builtin_memcpy(line, "traceparent: 00-", TP_PREFIX_LEN);
	char *p = line + TP_PREFIX_LEN;
	for (int i = 0; i < 16; i++) {
		p[2 * i] = hex_digit(ctx->trace_id[i] >> 4);
		p[2 * i + 1] = hex_digit(ctx->trace_id[i] & 15);
	}
	p += 32;
	*p++ = '-';
	for (int i = 0; i < 8; i++) {
		p[2 * i] = hex_digit(ctx->span_id[i] >> 4);
		p[2 * i + 1] = hex_digit(ctx->span_id[i] & 15);
	}
	p += 16;
	__builtin_memcpy(p, "-01\r\n", 5);
}
