package probes

import (
	"net"
	"os"
	"testing"
)

// TestProcessTCP opens a listener and a connection to it in this process:
// both ends must be listed with their endpoints and states.
func TestProcessTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	socks, err := ProcessTCP(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var listening, client, server bool
	for _, k := range socks {
		switch {
		case k.Listening && k.Local.String() == ln.Addr().String():
			listening = true
		case k.Established && k.Local.String() == c.LocalAddr().String() && k.Remote.String() == ln.Addr().String():
			client = true
		case k.Established && k.Local.String() == ln.Addr().String() && k.Remote.String() == c.LocalAddr().String():
			server = true
		}
	}
	if !listening || !client || !server {
		t.Fatalf("listening %v, client %v, server %v in %+v", listening, client, server, socks)
	}
	ports, err := ListeningPorts(os.Getpid())
	if err != nil || !ports[ln.Addr().(*net.TCPAddr).Port] {
		t.Fatalf("ListeningPorts = %v, %v", ports, err)
	}
}
