// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising a Redis (RESP) client from the first bytes of a write.
#pragma once

// Does a write start like a RESP command: an array of bulk strings,
// "*N\r\n$"?
static __always_inline bool looks_like_resp_command(const char p[16])
{
	if (p[0] != '*')
		return false;
	int i = 1;
#pragma unroll
	for (; i < 5; i++) {
		if (p[i] < '0' || p[i] > '9')
			break;
	}
	if (i == 1 || i == 5)
		return false;
	return p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '$';
}
