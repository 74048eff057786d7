// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising a PostgreSQL client from the first bytes of a write.
#pragma once

static __always_inline __u32 be32(const char *p)
{
	return (__u32)(__u8)p[0] << 24 | (__u32)(__u8)p[1] << 16 | (__u32)(__u8)p[2] << 8 | (__u32)(__u8)p[3];
}

// Does a write start like a PostgreSQL client: a startup packet or an SSL
// or GSS encryption request, alone in the write (length, then a protocol
// code), or, on a connection opened before the agent attached, a simple
// query ('Q', alone) or a Parse ('P') whose length fits the write?
static __always_inline bool looks_like_postgres_client(const char p[16], __s64 len)
{
	if (len >= 8 && be32(p) == len) {
		__u32 code = be32(p + 4);
		if (code >> 16 == 3 || code == 80877103 || code == 80877104)
			return true;
	}
	if ((p[0] == 'Q' || p[0] == 'P') && len >= 6) {
		__s64 n = be32(p + 1);
		if (n >= 5 && n < (1 << 24) && (p[0] == 'Q' ? n + 1 == len : n + 1 <= len))
			return true;
	}
	return false;
}
