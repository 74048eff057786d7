// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Addresses of a Go TCP connection, and the connection context through
// which a traced client hands its span to a traced server on the same host.
//
// A net.Conn holding a *net.TCPConn is recognised by its itab: the first
// method of a net.Conn itab is Close, so fun[0] is (*net.TCPConn).Close
// exactly when the dynamic type is *net.TCPConn (TLS and other wrappers have
// their own Close). From there: .fd (*netFD) .laddr/.raddr (net.Addr
// holding a *net.TCPAddr) .IP/.Port.
#pragma once
#include "common/goabi.h"
#include "common/maps.h"

volatile const __u64 off_netconn_fd;
volatile const __u64 off_netfd_laddr;
volatile const __u64 off_netfd_raddr;
volatile const __u64 off_tcpaddr_ip;
volatile const __u64 off_tcpaddr_port;
// Run-time address of net.(*TCPConn).Close; 0 when the binary has none.
volatile const __u64 tcpconn_close_fn;

// An IP address as Go's net.IP holds it, 4 or 16 bytes, and a port.
struct tcp_addr {
	__u8 ip[16];
	__u16 port;
	__u8 ip_len;
	__u8 pad[5];
};

// Read the *net.TCPAddr held by the net.Addr at iface.
static __always_inline bool read_tcp_addr(struct tcp_addr *out, __u64 iface)
{
	struct go_iface a = {};
	if (bpf_probe_read_user(&a, sizeof(a), (void *)iface) || !a.data)
		return false;
	struct {
		struct go_slice ip;
		__s64 port;
	} tcp = {};
	// IP and Port are adjacent in net.TCPAddr on every Go version we know;
	// otherwise read them apart.
	if (off_tcpaddr_port == off_tcpaddr_ip + sizeof(struct go_slice)) {
		if (bpf_probe_read_user(&tcp, sizeof(tcp), (void *)(a.data + off_tcpaddr_ip)))
			return false;
	} else {
		if (bpf_probe_read_user(&tcp.ip, sizeof(tcp.ip), (void *)(a.data + off_tcpaddr_ip)))
			return false;
		tcp.port = read_u64(a.data + off_tcpaddr_port);
	}
	if (tcp.ip.len != 4 && tcp.ip.len != 16)
		return false;
	__u64 n = tcp.ip.len;
	barrier_var(n);
	if (n > sizeof(out->ip))
		return false;
	if (bpf_probe_read_user(out->ip, n, (void *)tcp.ip.ptr))
		return false;
	out->ip_len = n;
	out->port = tcp.port;
	return true;
}

// Both addresses of the *net.TCPConn held by a net.Conn; false for any
// other kind of connection.
static __always_inline bool read_conn_addrs(struct go_iface c, struct tcp_addr *local, struct tcp_addr *remote)
{
	if (!itab_is(c.tab, tcpconn_close_fn))
		return false;
	__u64 fd = read_u64(c.data + off_netconn_fd);
	if (!fd)
		return false;
	return read_tcp_addr(local, fd + off_netfd_laddr) && read_tcp_addr(remote, fd + off_netfd_raddr);
}

// Write a in the 16-byte form (IPv4 as ::ffff:a.b.c.d) so that both ends of
// a connection spell it the same.
static __always_inline void ip16(__u8 dst[16], const struct tcp_addr *a)
{
	if (a->ip_len == 16) {
		__builtin_memcpy(dst, a->ip, 16);
		return;
	}
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, a->ip, 4);
}

// The client's view of a connection: its own address first.
static __always_inline void make_tuple(struct conn_tuple *t, const struct tcp_addr *client, const struct tcp_addr *server)
{
	ip16(t->client_ip, client);
	ip16(t->server_ip, server);
	t->client_port = client->port;
	t->server_port = server->port;
	t->pad = 0;
}
