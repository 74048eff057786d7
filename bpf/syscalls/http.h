// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising HTTP/1.x from the first bytes of a read or write.
#pragma once

// Does data start like an HTTP/1.x message: "HTTP/1." (a response) or an
// upper-case method followed by a space and a '/' or an absolute URI?
static __always_inline bool looks_like_http(const char p[16])
{
	if (p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/' && p[5] == '1' && p[6] == '.')
		return true;
	int i = 0;
#pragma unroll
	for (; i < 8; i++) {
		if (p[i] < 'A' || p[i] > 'Z')
			break;
	}
	if (i < 3 || i > 7 || p[i] != ' ')
		return false;
	char c = p[i + 1];
	return c == '/' || c == '*' || (c >= 'a' && c <= 'z');
}
