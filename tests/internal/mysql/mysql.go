// Package mysql runs a throwaway MariaDB server as a child process of a
// test, for tests of zerotrace's recognition of the MySQL protocol.
//
// Each Start makes a fresh data directory (mariadb-install-db) in a
// temporary directory and runs Debian's mariadbd (installed by
// scripts/setup.sh) on 127.0.0.1 on a free port, with its socket in that
// directory and without grant tables (any user connects, no password), as
// the "mysql" OS user that the package creates. It is stopped at cleanup.
package mysql

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

const (
	installDB = "/usr/bin/mariadb-install-db"
	server    = "/usr/sbin/mariadbd"
	osUser    = "mysql"
	// readyTimeout bounds the wait for the server to greet a client.
	readyTimeout = 60 * time.Second
)

// Server is a running MariaDB server.
type Server struct {
	Port int
	dir  string
	cmd  *exec.Cmd
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start runs a MariaDB server for the rest of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	u, err := user.Lookup(osUser)
	if err != nil {
		t.Fatalf("user %s (the mariadb-server package creates it; scripts/setup.sh installs that): %v", osUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "zerotrace-mysql-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	s := &Server{Port: testenv.FreePort(t), dir: dir}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(installDB, "--no-defaults", "--datadir="+data, "--user="+osUser,
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", installDB, err, out)
	}
	s.cmd = exec.Command(server, "--no-defaults", "--datadir="+data, "--user="+osUser,
		"--port="+strconv.Itoa(s.Port), "--bind-address=127.0.0.1", "--socket="+filepath.Join(dir, "sock"),
		"--pid-file="+filepath.Join(dir, "pid"), "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=16M")
	testenv.RunServer(t, s.cmd, testenv.ServerSpec{
		Name:         "MariaDB on " + s.Addr() + " (data in " + data + ")",
		Ready:        func() error { return greeted(s.Addr()) },
		ReadyTimeout: readyTimeout,
		StopTimeout:  30 * time.Second,
	})
	return s
}

// greeted connects and reads the server's greeting (protocol version 10).
func greeted(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if buf[4] != 0x0a {
		return fmt.Errorf("greeting %x", buf)
	}
	return nil
}
