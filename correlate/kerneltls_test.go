package correlate

import (
	"net/netip"
	"testing"
)

// TestKernelTLSPlaintext: TLS plaintext records (probes/openssl) join the
// stream of their socket: a client request over TLS has an https URL, a
// served one the https scheme, and the connection stays "tls" with its
// server name rather than becoming "http".
func TestKernelTLSPlaintext(t *testing.T) {
	k := newTestKernel(&Stats{})
	var protos []SockProto
	k.recognised = func(d *SockData, _ string) { protos = append(protos, d.Proto) }
	local, remote := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:443")
	hello := sock(SockWrite, 5, 0, "\x16\x03\x01")
	hello.Proto, hello.Sock, hello.Local, hello.Remote = ProtoTLS, 0xabc, local, remote
	k.handle(hello)
	req := sock(SockWrite, 5, 1, "POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n\r\n")
	req.Sock, req.TLS = 0xabc, true
	if s := k.handle(req); s != nil {
		t.Fatalf("a span before the response: %v", s)
	}
	resp := sock(SockRead, 5, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.Sock, resp.TLS = 0xabc, true
	s := k.handle(resp)
	if s == nil {
		t.Fatal("no client span")
	}
	if got := attr(s, "url.full"); got != "https://api.example.com/v1/x" {
		t.Errorf("url.full %q", got)
	}
	if got := attr(s, "server.port"); got != "443" {
		t.Errorf("server.port %q", got)
	}
	if len(protos) != 1 || protos[0] != ProtoTLS {
		t.Errorf("the connection was recognised as %v, want tls only", protos)
	}

	// A server's side.
	in := sock(SockRead, 6, 10, "GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
	in.Sock, in.TLS, in.Local, in.Remote = 0xdef, true, remote, local
	k.handle(in)
	out := sock(SockWrite, 6, 12, "HTTP/1.1 204 No Content\r\n\r\n")
	out.Sock, out.TLS = 0xdef, true
	s = k.handle(out)
	if s == nil {
		t.Fatal("no server span")
	}
	if got := attr(s, "url.scheme"); got != "https" {
		t.Errorf("url.scheme %q", got)
	}
}
