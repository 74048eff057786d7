// Package postgres runs a throwaway PostgreSQL server as a child process of
// a test, for tests of zerotrace's database tracing against real drivers.
//
// Each Start makes a fresh cluster (initdb) in its own temporary directory,
// with the server listening on 127.0.0.1 on a free port and its unix socket
// inside that directory, so tests in parallel and in other packages do not
// share anything. It uses the binaries of the Debian postgresql package
// (/usr/lib/postgresql/<version>/bin, installed by scripts/setup.sh), and no
// Go driver: setup goes through psql.
//
// PostgreSQL refuses to run as root, so when the tests run as root (as the
// privileged tests do) the server and its tools run as the "postgres" OS user
// that the package creates.
package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

const (
	// Database is the database Start creates, owned by User.
	Database = "zerotrace"
	// User is the role Start creates; it can log in with Password.
	User = "zt"
	// Password is User's password. Loopback connections are trusted, so
	// the server does not check it, but clients send it as usual.
	Password = "zt-secret-pw"

	// binGlob finds the server binaries of every installed major version.
	binGlob = "/usr/lib/postgresql/*/bin"
	// osUser runs the server when the tests run as root.
	osUser = "postgres"

	// initTimeout bounds initdb and each setup command.
	initTimeout = 2 * time.Minute
	// readyTimeout bounds the wait for the server to accept connections;
	// it normally takes well under a second.
	readyTimeout = 30 * time.Second
	// probeTimeout bounds one pg_isready run (it is told to give up after
	// a second).
	probeTimeout = 10 * time.Second
	// stopTimeout bounds "pg_ctl stop -m fast" and the exit that follows.
	stopTimeout = 30 * time.Second
	// startAttempts is how often Start tries new ports when another process
	// took the free port it picked before the server bound it.
	startAttempts = 3
	// logDumpLimit caps how much of the server log goes into a failing
	// test's output (the tail is kept).
	logDumpLimit = 64 << 10
	// maxSocketDir keeps the unix socket path ("<dir>/.s.PGSQL.<port>")
	// within the 107 bytes of sun_path.
	maxSocketDir = 80
)

// Server is a running PostgreSQL server started by Start.
type Server struct {
	port    int
	dir     string // the temporary directory holding everything below
	dataDir string
	sockDir string
	logPath string
	bin     string // directory of initdb, pg_ctl, postgres, psql, ...
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result; read after exited is closed
	cred    *syscall.Credential
}

// Start creates a new cluster in a temporary directory, starts a server on
// 127.0.0.1 on a free port with trust authentication for local and loopback
// connections, creates the role User (password Password) and the database
// Database owned by it, and waits until the server accepts connections
// (within 30 s, scaled by testenv.Timeout). At cleanup the server is stopped
// with "pg_ctl stop -m fast" and the directory removed; the test fails if the
// server exited on its own before that, and a failed test gets the tail of
// the server log.
//
// It fails the test (it never skips) when PostgreSQL is not installed. The
// server is started directly, not through "pg_ctl start", and gets SIGQUIT
// (immediate shutdown) if the test process dies without cleaning up.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{bin: findBinDir(t)}
	s.cred = postgresCredential(t)
	s.dir = makeDir(t, s.cred)
	t.Cleanup(func() {
		if err := os.RemoveAll(s.dir); err != nil {
			t.Errorf("removing the PostgreSQL directory: %v", err)
		}
	})
	s.dataDir = filepath.Join(s.dir, "data")
	s.sockDir = filepath.Join(s.dir, "sock")
	s.logPath = filepath.Join(s.dir, "postgres.log")
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		t.Fatalf("creating the socket directory: %v", err)
	}
	s.chown(t, s.sockDir)

	initdb := []string{"-D", s.dataDir, "-U", osUser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"}
	if out, err := s.run(t, initTimeout, "initdb", initdb...); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	for attempt := 1; ; attempt++ {
		err := s.startServer(t)
		if err == nil {
			break
		}
		log := readTail(s.logPath, logDumpLimit)
		portTaken := strings.Contains(log, "could not bind") || strings.Contains(log, "already in use")
		if !portTaken || attempt == startAttempts {
			t.Fatalf("starting PostgreSQL (%s/postgres, port %d): %v\nserver log (%s):\n%s", s.bin, s.port, err, s.logPath, log)
		}
		t.Logf("port %d was taken before PostgreSQL bound it; trying another", s.port)
	}

	setup := []string{
		"CREATE ROLE " + User + " LOGIN PASSWORD '" + Password + "'",
		"CREATE DATABASE " + Database + " OWNER " + User,
	}
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.sockDir, "-p", strconv.Itoa(s.port), "-U", osUser, "-d", "postgres"}
	for _, q := range setup {
		// One -c each: CREATE DATABASE cannot run inside a transaction block.
		args = append(args, "-c", q)
	}
	if out, err := s.psql(t, args...); err != nil {
		t.Fatalf("creating role %s and database %s: %v\n%s", User, Database, err, out)
	}
	t.Logf("PostgreSQL (%s) started (pid %d) on %s, data in %s", s.bin, s.cmd.Process.Pid, s.Addr(), s.dataDir)
	return s
}

// DSN returns a URL for User's connection to Database over TCP,
// "postgres://zt:zt-secret-pw@127.0.0.1:PORT/zerotrace?sslmode=disable",
// which both github.com/lib/pq and pgx accept (and psql).
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", User, Password, s.Addr(), Database)
}

// Addr returns the server's TCP address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// psql runs the server's psql with args (as the postgres OS user when the
// tests run as root) and returns its combined output. It is bounded by a
// 2-minute timeout (scaled by testenv.Timeout).
func (s *Server) psql(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	return s.run(t, initTimeout, "psql", args...)
}

// startServer picks a port and starts the server on it, returning once it
// accepts connections.
func (s *Server) startServer(t testing.TB) error {
	t.Helper()
	s.port = testenv.FreePort(t)
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(s.bin, "postgres"),
		"-D", s.dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(s.port),
		"-c", "unix_socket_directories="+s.sockDir,
		// A test database needs no durability.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	)
	cmd.Dir = s.dir
	cmd.Env = s.env()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// SIGQUIT is PostgreSQL's immediate shutdown: if the test process dies
	// without cleaning up, the server goes too instead of holding its port
	// and directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if err := testenv.StartTied(cmd, syscall.SIGQUIT); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()

	if err := s.waitReady(t); err != nil {
		// Stop whatever is left and forget it; a new attempt starts afresh.
		select {
		case <-exited:
			err = fmt.Errorf("%w (server exited: %v)", err, s.waitErr)
		default:
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-exited:
			case <-time.After(testenv.Timeout(t, stopTimeout)):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		return err
	}
	t.Cleanup(func() { s.stop(t) })
	return nil
}

// waitReady polls pg_isready until the server accepts TCP connections,
// exits, or the ready timeout passes.
func (s *Server) waitReady(t testing.TB) error {
	t.Helper()
	timeout := testenv.Timeout(t, readyTimeout)
	deadline := time.Now().Add(timeout)
	for {
		out, err := s.run(t, probeTimeout, "pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-d", "postgres", "-U", osUser, "-t", "1")
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("server exited while starting")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %v (pg_isready: %v %s)", timeout, err, bytes.TrimSpace(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the server down with "pg_ctl stop -m fast" (killing it if that
// does not work) and reports an earlier unexpected exit.
func (s *Server) stop(t testing.TB) {
	t.Helper()
	select {
	case <-s.exited:
		t.Errorf("PostgreSQL (pid %d) exited during the test: %v", s.cmd.Process.Pid, s.waitErr)
	default:
		timeout := testenv.Timeout(t, stopTimeout)
		out, err := s.run(t, stopTimeout, "pg_ctl", "stop", "-D", s.dataDir, "-m", "fast", "-w", "-t", strconv.Itoa(int(timeout/time.Second)))
		if err != nil {
			t.Errorf("pg_ctl stop: %v\n%s", err, out)
		}
		select {
		case <-s.exited:
		case <-time.After(timeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
			t.Errorf("PostgreSQL (pid %d) did not exit within %v of pg_ctl stop; killed it", s.cmd.Process.Pid, timeout)
		}
	}
	if t.Failed() {
		t.Logf("PostgreSQL log (%s):\n%s", s.logPath, readTail(s.logPath, logDumpLimit))
	}
}

// run runs one of the PostgreSQL programs and returns its combined output.
// It is killed after timeout, scaled by testenv.Timeout.
func (s *Server) run(t testing.TB, timeout time.Duration, prog string, args ...string) ([]byte, error) {
	t.Helper()
	timeout = testenv.Timeout(t, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	cmd.Env = s.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", prog, timeout, err)
	}
	return out, err
}

// env is the environment of the PostgreSQL programs: the test's, without
// the PG* variables that would redirect them (PGHOST, PGPORT, ...), with
// HOME in the cluster's directory (the postgres user cannot read root's) and
// messages in English, which Start looks for in the log.
func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") || name == "HOME" || strings.HasPrefix(name, "LC_") || name == "LANG" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+s.dir, "LC_ALL=C")
}

// chown hands path to the postgres user when the tests run as root.
func (s *Server) chown(t testing.TB, path string) {
	t.Helper()
	if s.cred == nil {
		return
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		t.Fatalf("handing %s to the %s user: %v", path, osUser, err)
	}
}

// findBinDir returns the bin directory of the newest installed PostgreSQL.
func findBinDir(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob(binGlob)
	best, bestVersion := "", []int(nil)
	for _, d := range dirs {
		v, ok := parseVersion(filepath.Base(filepath.Dir(d)))
		if !ok || !hasPrograms(d) {
			continue
		}
		if best == "" || versionLess(bestVersion, v) {
			best, bestVersion = d, v
		}
	}
	if best == "" {
		t.Fatalf("PostgreSQL is not installed: no %s holds initdb, pg_ctl, postgres, psql and pg_isready; run scripts/setup.sh (as root) to install the Debian postgresql package", binGlob)
	}
	return best
}

// hasPrograms reports whether dir holds every program Start runs.
func hasPrograms(dir string) bool {
	for _, p := range []string{"initdb", "pg_ctl", "postgres", "psql", "pg_isready"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// parseVersion reads a Debian PostgreSQL version directory name, "15" or
// (before PostgreSQL 10) "9.6".
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// postgresCredential returns the credential to run the PostgreSQL programs
// with: the postgres user's when the tests run as root, nil (the test's own)
// otherwise, since PostgreSQL refuses to run as root only.
func postgresCredential(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		t.Fatalf("PostgreSQL cannot run as root and there is no %q user to run it as (%v); run scripts/setup.sh (as root) to install the Debian postgresql package, which creates it", osUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("user %s: %v", osUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// dirPrefix starts the names of the servers' directories, followed by the
// pid of the test process and a random suffix.
const dirPrefix = "zerotrace-pg-"

// makeDir creates the server's temporary directory, owned by the user that
// runs the server. The testing package's TempDir will not do: it is private
// to root. The directory goes under $TMPDIR when the postgres user can reach
// it and the socket path stays short enough, under /tmp otherwise.
//
// Directories left behind by test processes that died without cleaning up
// (a "go test" timeout) are removed first; their servers went with them.
func makeDir(t testing.TB, cred *syscall.Credential) string {
	t.Helper()
	base := os.TempDir()
	if (cred != nil && !traversable(base)) || len(base) > maxSocketDir-30 {
		base = "/tmp"
	}
	pruneDeadDirs(base)
	dir, err := os.MkdirTemp(base, dirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		t.Fatalf("creating the PostgreSQL directory: %v", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("handing %s to the %s user: %v", dir, osUser, err)
		}
	}
	return dir
}

// pruneDeadDirs removes the server directories under base whose test
// process no longer exists. Errors are ignored: this is housekeeping only.
func pruneDeadDirs(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*-*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), dirPrefix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		// Signal 0 checks for existence only.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// traversable reports whether every directory from dir up to / can be
// searched by any user, which the postgres user needs to reach its own
// directory inside dir.
func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// readTail returns the last max bytes of the file at path.
func readTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	prefix := ""
	if fi.Size() > max {
		if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
			return fmt.Sprintf("(cannot read log: %v)", err)
		}
		prefix = fmt.Sprintf("[... first %d bytes omitted ...]\n", fi.Size()-max)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return prefix + string(data)
}
