package postgres

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestStart starts a server in a subtest, so that its cleanup runs when the
// subtest ends, queries it through the DSN with psql as the postgres user,
// and checks that nothing of it is left afterwards.
func TestStart(t *testing.T) {
	testenv.RequireRoot(t)

	var (
		addr, dir string
		pid       int
	)
	t.Run("server", func(t *testing.T) {
		s := Start(t)
		addr, dir, pid = s.Addr(), s.dir, s.cmd.Process.Pid

		if want := "postgres://zt:zt-secret-pw@" + addr + "/zerotrace?sslmode=disable"; s.DSN() != want {
			t.Errorf("DSN() = %q, want %q", s.DSN(), want)
		}
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("Addr() = %q, want 127.0.0.1:PORT", addr)
		}
		if s.cred == nil {
			t.Fatal("running as root, but the server does not run as the postgres user")
		}

		out, err := s.psql(t, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", s.DSN(), "-c", "SELECT 1, current_user, current_database()")
		if err != nil {
			t.Fatalf("psql %s: %v\n%s", s.DSN(), err, out)
		}
		if got, want := strings.TrimSpace(string(out)), "1|zt|zerotrace"; got != want {
			t.Errorf("SELECT 1, current_user, current_database() through the DSN = %q, want %q", got, want)
		}
	})
	if pid == 0 {
		t.Fatal("the server did not start")
	}

	// The server process has been waited for, so the pid no longer exists
	// (unless reused, which is unlikely within a moment).
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("server pid %d still exists after cleanup (kill 0: %v)", pid, err)
	}
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after cleanup", addr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("server directory %s still exists after cleanup (stat: %v)", dir, err)
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"15", "16", true},
		{"16", "15", false},
		{"9.6", "10", true},
		{"10", "9.6", false},
		{"9.5", "9.6", true},
		{"15", "15", false},
	} {
		a, okA := parseVersion(tc.a)
		b, okB := parseVersion(tc.b)
		if !okA || !okB {
			t.Fatalf("parseVersion(%q), parseVersion(%q) failed", tc.a, tc.b)
		}
		if got := versionLess(a, b); got != tc.less {
			t.Errorf("versionLess(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
	for _, bad := range []string{"", "x", "15a", "1..2", "-1"} {
		if _, ok := parseVersion(bad); ok {
			t.Errorf("parseVersion(%q) succeeded, want failure", bad)
		}
	}
}
