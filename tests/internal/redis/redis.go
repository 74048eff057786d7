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
	"syscall"
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
	out := testenv.NewOutputTail()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := testenv.StartTied(s.cmd, syscall.SIGKILL); err != nil {
		t.Fatalf("starting %s (scripts/setup.sh installs it): %v", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(testenv.Timeout(t, readyTimeout))
	for {
		if err := ping(s.Addr()); err == nil {
			t.Logf("Redis started (pid %d) on %s", s.cmd.Process.Pid, s.Addr())
			return s
		} else if time.Now().After(deadline) {
			t.Fatalf("Redis on %s not ready within %v: %v\n%s", s.Addr(), readyTimeout, err, out.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("redis-server exited at start-up: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
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
