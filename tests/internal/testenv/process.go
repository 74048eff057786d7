package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// listenTimeout bounds the wait for the "listening on" line. The app
	// prints it right after binding, so this only trips when it hangs or
	// crashes at start.
	listenTimeout = 30 * time.Second
	// stopTimeout is how long a SIGTERM'd app may take to exit before it is
	// killed. It exceeds the app's own shutdown bound (5 s /slow requests
	// plus margin) so a healthy app always exits on its own.
	stopTimeout = 15 * time.Second
	// outputLimit caps the captured stdout and stderr (each; the tail is
	// kept) so that a runaway child cannot exhaust the test's memory.
	outputLimit = 1 << 20
)

// listeningPrefix starts the one line the sample application prints on
// stdout once its listener is bound.
const listeningPrefix = "listening on "

// proc tracks a process started by StartSampleApp.
type proc struct {
	cmd    *exec.Cmd
	stdout *tailBuffer
	stderr *tailBuffer
	exited chan struct{} // closed once Wait has returned
	err    error         // Wait's result; read only after exited is closed

	mu      sync.Mutex
	stopped bool // stop was requested (or a failure was already reported)
}

var (
	procsMu sync.Mutex
	procs   = map[*exec.Cmd]*proc{}
)

// StartSampleApp starts the sample application binary bin (see
// BuildSampleApp) with args, waits until it prints "listening on HOST:PORT"
// and returns the running command and HOST:PORT. Pass "-addr", "HOST:PORT" in
// args to choose the address; by default the app picks a free port on
// 127.0.0.1.
//
// The process is stopped at cleanup with SIGTERM, then SIGKILL if it has not
// exited within 15 s. The test fails if the process exited before that (for
// example because a probe crashed it), or if it did not shut down cleanly; the
// failure includes its exit status and stderr. To stop it earlier, call
// StopSampleApp. Callers must not call cmd.Wait: a helper goroutine already
// does. The waits for the "listening on" line (30 s) and for the exit are
// scaled by TimeoutScaleEnv.
func StartSampleApp(t testing.TB, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return StartSampleAppCmd(t, exec.Command(bin, args...))
}

// StartSampleAppCmd is StartSampleApp for a command the caller has prepared
// (its environment, its directory); it must not have been started, and its
// Stdout and Stderr are replaced.
func StartSampleAppCmd(t testing.TB, cmd *exec.Cmd) (*exec.Cmd, string) {
	t.Helper()
	bin := cmd.Path
	p := &proc{
		cmd:    cmd,
		stdout: newTailBuffer(outputLimit),
		stderr: newTailBuffer(outputLimit),
		exited: make(chan struct{}),
	}
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	// Killed if the test process dies, so that no orphan keeps serving.
	if err := StartTied(p.cmd, syscall.SIGKILL); err != nil {
		t.Fatalf("starting sample app %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	procsMu.Lock()
	procs[p.cmd] = p
	procsMu.Unlock()
	t.Cleanup(func() {
		procsMu.Lock()
		delete(procs, p.cmd)
		procsMu.Unlock()
		p.stop(t)
	})

	wait := Timeout(t, listenTimeout)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		if line, ok := p.stdout.firstLine(); ok {
			addr, found := strings.CutPrefix(line, listeningPrefix)
			if !found || addr == "" {
				p.markReported()
				t.Fatalf("sample app %s printed %q, want %q%s", bin, line, listeningPrefix+"HOST:PORT", p.describe())
			}
			return p.cmd, addr
		}
		select {
		case <-p.exited:
			// The line may have been written just before exiting.
			if _, ok := p.stdout.firstLine(); ok {
				continue
			}
			p.markReported()
			t.Fatalf("sample app %s exited before listening: %v%s", bin, p.err, p.describe())
		case <-deadline.C:
			p.markReported()
			t.Fatalf("sample app %s printed no %q line within %v%s", bin, listeningPrefix, wait, p.describe())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// StopSampleApp stops an app started by StartSampleApp now rather than at
// cleanup: SIGTERM, then SIGKILL after 15 s. The test fails if the app had
// already exited, or does not exit cleanly.
func StopSampleApp(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	procsMu.Lock()
	p := procs[cmd]
	procsMu.Unlock()
	if p == nil {
		t.Fatalf("StopSampleApp: command was not started by StartSampleApp")
	}
	p.stop(t)
}

// markReported records that a failure was already reported for this process,
// so that cleanup stops it without reporting its exit again.
func (p *proc) markReported() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.kill()
}

func (p *proc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if already {
		p.kill()
		return
	}

	// A process that died a moment ago may not be reaped yet: it is then a
	// zombie, and signalling it would make its death look like a failed
	// shutdown.
	unexpected := func() {
		<-p.exited
		t.Errorf("sample app (pid %d) exited unexpectedly during the test: %v%s", p.cmd.Process.Pid, exitDescription(p.err), p.describe())
	}
	select {
	case <-p.exited:
		unexpected()
		return
	default:
	}
	if isZombie(p.cmd.Process.Pid) {
		unexpected()
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			unexpected()
			return
		}
		t.Logf("sending SIGTERM to sample app (pid %d): %v", p.cmd.Process.Pid, err)
	}
	limit := Timeout(t, stopTimeout)
	select {
	case <-p.exited:
		if killedBy(p.err) == syscall.SIGKILL {
			// Our SIGTERM is handled by a clean shutdown; death by
			// SIGKILL came from elsewhere, possibly before the signal
			// was even delivered (a dying process is not a zombie yet).
			t.Errorf("sample app (pid %d) exited unexpectedly during the test: %v%s", p.cmd.Process.Pid, exitDescription(p.err), p.describe())
		} else if p.err != nil {
			t.Errorf("sample app (pid %d) did not shut down cleanly after SIGTERM: %v%s", p.cmd.Process.Pid, exitDescription(p.err), p.describe())
		}
	case <-time.After(limit):
		p.kill()
		t.Errorf("sample app (pid %d) did not exit within %v of SIGTERM; killed it%s", p.cmd.Process.Pid, limit, p.describe())
	}
}

// killedBy returns the signal that ended a process whose Wait returned err,
// or 0 when it was not ended by a signal.
func killedBy(err error) syscall.Signal {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return 0
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// isZombie reports whether process pid has exited but not been reaped.
func isZombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may contain spaces and parentheses, so
	// the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// describe renders the captured output for a failure message.
func (p *proc) describe() string {
	var b strings.Builder
	for _, s := range []struct {
		name string
		buf  *tailBuffer
	}{{"stdout", p.stdout}, {"stderr", p.stderr}} {
		out := s.buf.String()
		if out == "" {
			fmt.Fprintf(&b, "\n%s: (empty)", s.name)
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n%s", s.name, strings.TrimRight(out, "\n"))
	}
	return b.String()
}

// tailBuffer is a goroutine-safe writer that keeps the last max bytes written
// and remembers the first complete line.
type tailBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
	first     string
	hasFirst  bool
	pending   []byte // the first line while it is incomplete
}

func newTailBuffer(max int) *tailBuffer {
	return &tailBuffer{max: max}
}

// OutputTail is what NewOutputTail returns: a writer for a child process's
// output that keeps its last bytes for failure messages.
type OutputTail interface {
	io.Writer
	String() string
}

// NewOutputTail returns a goroutine-safe writer that keeps the last MiB
// written, for the output of servers that tests start themselves.
func NewOutputTail() OutputTail { return newTailBuffer(outputLimit) }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.hasFirst {
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			b.first = string(append(b.pending, p[:i]...))
			b.hasFirst = true
			b.pending = nil
		} else if len(b.pending) < b.max {
			b.pending = append(b.pending, p...)
		}
	}
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
		b.truncated = true
	}
	return len(p), nil
}

func (b *tailBuffer) firstLine() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSuffix(b.first, "\r"), b.hasFirst
}

// String returns the kept output, marked when its start was dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return "[... earlier output dropped ...]\n" + b.buf.String()
	}
	return b.buf.String()
}
