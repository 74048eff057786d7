package tlshello

import (
	"crypto/tls"
	"net"
	"testing"
)

// clientHello returns the first record a Go TLS client sends for name.
func clientHello(t testing.TB, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: name})
		_ = c.Handshake() // fails when b closes
	}()
	buf := make([]byte, 16<<10)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestServerName(t *testing.T) {
	hello := clientHello(t, "api.llm.example")
	if name, ok := ServerName(hello[:min(len(hello), 512)]); !ok || name != "api.llm.example" {
		t.Errorf("server name %q, %v", name, ok)
	}
	// Cut anywhere before the name: no name, no panic.
	for n := range 60 {
		if name, ok := ServerName(hello[:n]); ok {
			t.Errorf("cut at %d: %q", n, name)
		}
	}
	for _, bad := range [][]byte{nil, []byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 600)} {
		if name, ok := ServerName(bad); ok {
			t.Errorf("%q: server name %q", bad, name)
		}
	}
}

// FuzzServerName: whatever the bytes, no panic, and a name found is one a
// DNS host name may be.
func FuzzServerName(f *testing.F) {
	f.Add(clientHello(f, "api.llm.example"))
	f.Add([]byte(nil))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 3, 1, 0, 0x40, 1, 0, 0, 0x3c, 3, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if name, ok := ServerName(b); ok && !validHostName([]byte(name)) {
			t.Fatalf("server name %q", name)
		}
	})
}
