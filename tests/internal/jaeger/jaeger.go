// Package jaeger runs a real Jaeger (v2 all-in-one, in-memory storage) as a
// child process of a test and reads spans back through its HTTP query API,
// so that end-to-end tests can check what zerotrace exported over OTLP.
//
// The binary is built from the version pinned in tests/tools/go.mod by
// scripts/build-jaeger.sh (cached in .cache/bin/jaeger) and configured by
// tests/tools/jaeger-config.yaml: OTLP/HTTP on 127.0.0.1:4318, query API on
// 127.0.0.1:16686 (and its gRPC twin on 127.0.0.1:16685), nothing else.
package jaeger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// Fixed addresses, as set in tests/tools/jaeger-config.yaml.
const (
	otlpAddr      = "127.0.0.1:4318"
	queryAddr     = "127.0.0.1:16686"
	queryGRPCAddr = "127.0.0.1:16685"
)

// MaxTraces is the number of traces the in-memory store keeps (max_traces in
// tests/tools/jaeger-config.yaml). It is also the largest limit the query API
// accepts: Jaeger answers a larger one with an error.
const MaxTraces = 100000

const (
	// readyTimeout bounds the wait for Jaeger's ports once started; it
	// normally listens within a second.
	readyTimeout = 30 * time.Second
	// stopTimeout is how long Jaeger may take to exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// logDumpLimit caps how much of Jaeger's log goes into a failing test's
	// output (the tail is kept; the whole file stays in the test's TempDir
	// until cleanup).
	logDumpLimit = 64 << 10
	// defaultSettle is the default for Jaeger.Settle.
	defaultSettle = time.Second
)

// Jaeger is a running Jaeger started by Start.
type Jaeger struct {
	// Settle is how long WaitForSpans waits, once it has seen the spans it
	// asked for, before reading them again, so that spans arriving just
	// after (duplicates, spans that should not exist) are returned too.
	// Start sets it to 1 s.
	Settle time.Duration

	client  *http.Client
	logPath string
}

// Start builds Jaeger if needed (scripts/build-jaeger.sh; the first build
// takes about five minutes, later ones reuse the cached binary), starts it
// with tests/tools/jaeger-config.yaml and waits until its OTLP and query
// ports answer. Jaeger is stopped at cleanup; when the test failed, or Jaeger
// exited on its own, its log is added to the test output.
//
// Jaeger's ports are fixed, so Start takes a machine-wide lock file for the
// lifetime of the test: tests in other packages (which "go test ./..." runs
// in parallel) wait for it instead of failing. A port held by some other
// process fails the test with that process's pid and command line.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	root := testenv.RepoRoot(t)

	lockPorts(t)
	for _, addr := range []string{otlpAddr, queryAddr, queryGRPCAddr} {
		if err := checkPortFree(addr); err != nil {
			t.Fatalf("cannot start Jaeger: %v", err)
		}
	}

	bin := buildBinary(t, root)
	config := filepath.Join(root, "tests", "tools", "jaeger-config.yaml")
	// TempDir before the stop cleanup is registered: cleanups run last-in
	// first-out, so the log is still there when the stop cleanup reads it.
	logPath := filepath.Join(t.TempDir(), "jaeger.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("creating Jaeger log file: %v", err)
	}

	cmd := exec.Command(bin, "--config=file:"+config)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Kill Jaeger if the test process dies (a "go test" timeout): an orphan
	// would keep the fixed ports and break the next run.
	if err := testenv.StartTied(cmd, syscall.SIGKILL); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	// The child has its own copy of the descriptor.
	logFile.Close()

	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	j := &Jaeger{
		Settle:  defaultSettle,
		client:  &http.Client{Timeout: 30 * time.Second},
		logPath: logPath,
	}

	startFailed := false
	t.Cleanup(func() {
		select {
		case <-exited:
			if !startFailed {
				t.Errorf("Jaeger (pid %d) exited during the test: %v", cmd.Process.Pid, waitErr)
			}
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(stopTimeout):
				_ = cmd.Process.Kill()
				<-exited
				t.Logf("Jaeger (pid %d) did not exit within %v of SIGTERM; killed it", cmd.Process.Pid, stopTimeout)
			}
		}
		if t.Failed() {
			t.Logf("Jaeger log (%s):\n%s", logPath, readTail(logPath, logDumpLimit))
		}
	})

	if err := j.waitReady(exited); err != nil {
		startFailed = true
		select {
		case <-exited:
			err = fmt.Errorf("%w (Jaeger exited: %v)", err, waitErr)
		default:
		}
		// The log is dumped by the cleanup, since the test has now failed.
		t.Fatalf("Jaeger did not become ready: %v", err)
	}
	t.Logf("Jaeger %s started (pid %d): OTLP %s, query %s, log %s", bin, cmd.Process.Pid, j.OTLPEndpoint(), j.QueryURL(), logPath)
	return j
}

// OTLPEndpoint returns the base URL of Jaeger's OTLP/HTTP receiver,
// "http://127.0.0.1:4318"; traces are posted to its /v1/traces path.
func (j *Jaeger) OTLPEndpoint() string {
	return "http://" + otlpAddr
}

// QueryURL returns the base URL of Jaeger's query service,
// "http://127.0.0.1:16686".
func (j *Jaeger) QueryURL() string {
	return "http://" + queryAddr
}

// LogPath returns the file Jaeger's stdout and stderr are written to. It is
// in the test's TempDir and removed at cleanup.
func (j *Jaeger) LogPath() string {
	return j.logPath
}

// waitReady waits until both ports accept connections and the query API
// answers, Jaeger exits, or readyTimeout passes.
func (j *Jaeger) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for {
		lastErr = j.probe()
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", readyTimeout, lastErr)
		}
		select {
		case <-exited:
			return fmt.Errorf("exited while starting: %v", lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe checks once that the OTLP port accepts connections and that the
// query API serves /api/services. The receiver starts after the query
// extension, so the OTLP port answering means the pipeline is running.
func (j *Jaeger) probe() error {
	c, err := net.DialTimeout("tcp", otlpAddr, time.Second)
	if err != nil {
		return fmt.Errorf("OTLP port: %v", err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := j.Services(ctx); err != nil {
		return fmt.Errorf("query API: %v", err)
	}
	return nil
}

// buildBinary runs scripts/build-jaeger.sh, which builds Jaeger only when the
// cached binary is missing or stale, and returns the path it prints.
func buildBinary(t testing.TB, root string) string {
	t.Helper()
	start := time.Now()
	script := filepath.Join(root, "scripts", "build-jaeger.sh")
	cmd := exec.CommandContext(t.Context(), "bash", script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A slow first build should not look like a hang in "go test -v".
	// The goroutine is waited for so that it never logs after the test.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Logf("building Jaeger with %s (about five minutes on a cold Go build cache) ...", script)
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s failed: %v\n%s%s", script, err, stderr.String(), stdout.String())
	}
	lines := strings.Fields(stdout.String())
	if len(lines) == 0 {
		t.Fatalf("%s printed no binary path\n%s", script, stderr.String())
	}
	bin := lines[len(lines)-1]
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("Jaeger binary %s ready after %v", bin, d.Round(time.Second))
	}
	return bin
}

// lockPorts takes the machine-wide lock that serialises the tests using
// Jaeger's fixed ports, waiting for it until shortly before the test's
// deadline, and releases it at cleanup. flock locks belong to the open file,
// so two tests of the same process exclude each other as well.
func lockPorts(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "zerotrace-jaeger-ports.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("opening lock file: %v", err)
	}
	wait := 10 * time.Minute
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			wait = time.Until(dl) - 30*time.Second
		}
	}
	deadline := time.Now().Add(wait)
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			t.Fatalf("locking %s: %v", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			t.Fatalf("another test has been using Jaeger's ports for too long (lock file %s held)", path)
		}
		if !logged {
			t.Logf("waiting for another test that uses Jaeger's ports (lock file %s)", path)
			logged = true
		}
		select {
		case <-t.Context().Done():
			f.Close()
			t.Fatalf("test ended while waiting for lock file %s", path)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Registered before the stop cleanup, so it runs after it: the ports
	// are free again when the next test gets the lock.
	t.Cleanup(func() { f.Close() })
}

// checkPortFree fails when addr cannot be bound, naming the process that
// listens on its port when it can be found.
func checkPortFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln.Close()
	}
	_, portStr, _ := net.SplitHostPort(addr)
	owner := "an unknown process"
	if o, oerr := portOwner(portStr); oerr == nil && o != "" {
		owner = o
	}
	return fmt.Errorf("port %s is already in use by %s (%v); stop it (ss -ltnp 'sport = :%s' shows the listener)", portStr, owner, err, portStr)
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
		if _, err := f.Seek(fi.Size()-max, 0); err != nil {
			return fmt.Sprintf("(cannot read log: %v)", err)
		}
		prefix = fmt.Sprintf("[... first %d bytes omitted ...]\n", fi.Size()-max)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return prefix + b.String()
}
