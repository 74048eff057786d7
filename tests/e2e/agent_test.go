package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// agent is a running `zerotrace attach`.
type agent struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// lockedWriter lets the test read a buffer while the process writes to it.
type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// startAgent runs zerotrace with args and waits until it says it attached
// to every --pid, or, without --pid, that it watches for processes.
func startAgent(t testing.TB, bin string, env []string, args ...string) *agent {
	t.Helper()
	a := &agent{t: t, done: make(chan struct{})}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Env = append(a.cmd.Environ(), env...)
	a.cmd.Stdout = lockedWriter{&a.mu, &a.stdout}
	a.cmd.Stderr = lockedWriter{&a.mu, &a.stderr}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("starting zerotrace: %v", err)
	}
	go func() {
		a.err = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("zerotrace stderr:\n%s", a.Stderr())
		}
	})
	wait := testenv.Timeout(t, 30*time.Second)
	deadline := time.After(wait)
	// One line per --pid.
	pids := 0
	for _, arg := range args {
		if arg == "--pid" {
			pids++
		}
	}
	ready := func() bool {
		if pids == 0 {
			// Selected by --exe or --port: ready once it watches.
			return strings.Contains(a.Stderr(), "watching for processes")
		}
		return strings.Count(a.Stderr(), "attached to") >= pids
	}
	for !ready() {
		select {
		case <-a.done:
			t.Fatalf("zerotrace exited before attaching (%v):\n%s", a.err, a.Stderr())
		case <-deadline:
			t.Fatalf("zerotrace did not attach within %v:\n%s", wait, a.Stderr())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return a
}

func (a *agent) Stderr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

func (a *agent) Stdout() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stdout.String()
}

// stop sends SIGINT and requires a clean exit.
func (a *agent) stop() {
	a.t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGINT)
	wait := testenv.Timeout(a.t, 30*time.Second)
	select {
	case <-a.done:
	case <-time.After(wait):
		_ = a.cmd.Process.Kill()
		a.t.Fatalf("zerotrace did not exit within %v of SIGINT:\n%s", wait, a.Stderr())
	}
	if a.err != nil {
		a.t.Fatalf("zerotrace exited with %v:\n%s", a.err, a.Stderr())
	}
}

// jsonSpans parses the agent's stdout as JSON lines; every line must parse.
func (a *agent) jsonSpans() []export.JSONSpan {
	a.t.Helper()
	var out []export.JSONSpan
	sc := bufio.NewScanner(strings.NewReader(a.Stdout()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s export.JSONSpan
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&s); err != nil {
			a.t.Fatalf("stdout line is not a JSON span: %v: %q", err, sc.Text())
		}
		if _, err := dec.Token(); err != io.EOF {
			a.t.Fatalf("stdout line has trailing data: %q", sc.Text())
		}
		out = append(out, s)
	}
	return out
}
