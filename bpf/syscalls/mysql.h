// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising MySQL/MariaDB from the first bytes of a read or write, and the
// end of a response at the end of a read.
#pragma once

static __always_inline __u32 le24(const char *p)
{
	return (__u32)(__u8)p[0] | (__u32)(__u8)p[1] << 8 | (__u32)(__u8)p[2] << 16;
}

// Does a read start like a MySQL or MariaDB server's greeting: one packet
// (3-byte length, sequence 0) filling the read, of protocol version 10,
// whose server version starts with a digit?
static __always_inline bool looks_like_mysql_greeting(const char p[16], __s64 len)
{
	return len >= 10 && le24(p) + 4 == len && p[3] == 0 && p[4] == 0x0a && p[5] >= '1' && p[5] <= '9';
}

// Does a write start like a MySQL client's command on a connection opened
// before the agent attached: one packet of sequence 0 filling the write,
// holding COM_QUERY (3) or COM_STMT_PREPARE (0x16) and some text?
static __always_inline bool looks_like_mysql_command(const char p[16], __s64 len)
{
	return len >= 6 && le24(p) + 4 == len && p[3] == 0 && (p[4] == 0x03 || p[4] == 0x16);
}

// Does a MySQL read end with the packet that ends a response: an EOF packet
// (length 5, 0xfe) or an OK packet with the 0xfe header (length 7, no rows
// affected and no insert id: the end of a result set when the client asked
// for no EOF packets), whose status does not say more results follow?
static __always_inline bool mysql_read_ends_response(__u64 buf, __s64 len)
{
	char t[11] = {};
	if (len < 11 || bpf_probe_read_user(t, sizeof(t), (void *)(buf + len - 11)))
		return false;
	// SERVER_MORE_RESULTS_EXISTS is bit 3 of the status flags.
	if (t[2] == 5 && t[3] == 0 && t[4] == 0 && t[6] == (char)0xfe)
		return !(t[9] & 0x08);
	return t[0] == 7 && t[1] == 0 && t[2] == 0 && t[4] == (char)0xfe && t[5] == 0 && t[6] == 0 && !(t[7] & 0x08);
}
