// Package redis runs a throwaway Redis server as a child process of a test,
// for tests of zerotrace's recognition of the RESP protocol.
//
// Each Start runs Debian's redis-server (installed by scripts/setup.sh) on
// 127.0.0.1 on a free port, with persistence off and its files in a
// temporary directory, and stops it at cleanup.
package redis

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// binary is the server from Debian's redis-server package.
const binary = "/usr/bin/redis-server"

// readyTimeout bounds the wait for the server to accept connections.
const readyTimeout = 30 * time.Second

// Server is a running Redis server.
type Server struct {
	Port int
	cmd  *exec.Cmd
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start runs a Redis server for the rest of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{Port: testenv.FreePort(t)}
	s.cmd = exec.Command(binary, "--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port),
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--daemonize", "no", "--loglevel", "warning")
	testenv.RunServer(t, s.cmd, testenv.ServerSpec{
		Name:         "Redis on " + s.Addr(),
		Ready:        func() error { return ping(s.Addr()) },
		ReadyTimeout: readyTimeout,
		StopTimeout:  15 * time.Second,
	})
	return s
}

// ping sends PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q (%v)", buf[:n], err)
	}
	return nil
}
