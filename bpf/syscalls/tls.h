// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising a TLS ClientHello from the first bytes of a write.
#pragma once

// Does a write start like a TLS ClientHello: a handshake record (0x16) of
// TLS 1.0-1.3 whose message is a ClientHello (1)?
static __always_inline bool looks_like_tls_client_hello(const char p[16], __s64 len)
{
	return len >= 9 && p[0] == 0x16 && p[1] == 0x03 && (__u8)p[2] <= 0x04 && p[5] == 0x01;
}
