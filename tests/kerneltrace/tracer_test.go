// Package kerneltrace checks the kernel side of the kernel-level tracing
// (probes/syscalls) directly: which programs are attached for what, and
// that the processes it follows (its fast filter of bits, and its maps) are
// added and forgotten as processes are selected, fork and exit.
package kerneltrace

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/syscalls"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

func newTracer(t *testing.T) *syscalls.Tracer {
	t.Helper()
	testenv.RequireRoot(t)
	_ = rlimit.RemoveMemlock()
	shared, err := events.LoadShared(events.DefaultRingSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() })
	tr, err := syscalls.NewTracer(shared)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

var syscallPrograms = []string{"sched_process_fork", "sys_enter", "sys_exit"}

// TestGoOnlyAttachesNoSyscallProgram: following a process's connections (all
// a Go program needs from the kernel side) attaches the connection and exit
// tracepoints, and no program on a syscall tracepoint.
func TestGoOnlyAttachesNoSyscallProgram(t *testing.T) {
	tr := newTracer(t)
	if got := tr.Attached(); len(got) != 0 {
		t.Fatalf("attached before any process: %v", got)
	}
	cmd := startShell(t)
	if err := tr.AddConnections(cmd.Process.Pid, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.Attached(), []string{"inet_sock_set_state", "sched_process_exit"}; !slices.Equal(got, want) {
		t.Errorf("attached for connections: %v, want %v", got, want)
	}
	s := tr.State(cmd.Process.Pid)
	if !s.ConnsBit || s.KernelBit || s.Conns != syscalls.Selected || s.Traced != 0 {
		t.Errorf("state of a process whose connections are followed: %+v", s)
	}
}

// TestProcessesAreForgottenAtExit: a selected process and the child it
// forks have their bits and entries from the selection and the fork on,
// lose them when they exit (so that a PID, once reused, is not traced), and
// the syscall programs are detached once nothing is traced.
func TestProcessesAreForgottenAtExit(t *testing.T) {
	tr := newTracer(t)
	sh := startShell(t)
	pid := sh.Process.Pid
	if err := tr.AddConnections(pid, nil); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddHTTP(pid); err != nil {
		t.Fatal(err)
	}
	for _, p := range syscallPrograms {
		if !slices.Contains(tr.Attached(), p) {
			t.Errorf("%s not attached while a process is traced from the kernel: %v", p, tr.Attached())
		}
	}
	want := syscalls.PIDState{KernelBit: true, ConnsBit: true, Traced: syscalls.Selected, Conns: syscalls.Selected}
	if s := tr.State(pid); s != want {
		t.Fatalf("selected process: %+v, want %+v", s, want)
	}

	// A child: the shell runs sleep, which stays until told.
	fmt.Fprintln(sh.stdin, "sleep 30 & echo $!")
	child := sh.readPID(t)
	want = syscalls.PIDState{ChildBit: true, Traced: syscalls.Child, Conns: syscalls.Child}
	if s := tr.State(child); s != want {
		t.Fatalf("child %d: %+v, want %+v", child, s, want)
	}
	if err := tr.AddHTTP(child); err != nil { // the watcher may select a child too
		t.Fatal(err)
	}
	if s := tr.State(child); s != want {
		t.Fatalf("child %d selected again: %+v, want %+v", child, s, want)
	}
	fmt.Fprintln(sh.stdin, "kill", child)
	waitForgotten(t, tr, child)

	sh.stdin.Close()
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	waitForgotten(t, tr, pid)
	if err := tr.Forget(pid); err != nil {
		t.Fatal(err)
	}
	if got := tr.Attached(); len(got) != 0 {
		t.Errorf("attached once nothing is traced: %v", got)
	}
}

// TestForgetAProcessGoneBeforeItsSelection: a process that exited before
// user space added it is not seen by the exit tracepoint; Forget takes its
// entries and bits away.
func TestForgetAProcessGoneBeforeItsSelection(t *testing.T) {
	tr := newTracer(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := tr.AddConnections(pid, []int{65000}); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddHTTP(pid); err != nil {
		t.Fatal(err)
	}
	if s := tr.State(pid); !s.KernelBit || !s.ConnsBit {
		t.Fatalf("selected: %+v", s)
	}
	if err := tr.Forget(pid); err != nil {
		t.Fatal(err)
	}
	if s := tr.State(pid); s.Followed() {
		t.Errorf("after Forget: %+v", s)
	}
	if got := tr.Attached(); len(got) != 0 {
		t.Errorf("attached once nothing is traced: %v", got)
	}
}

func waitForgotten(t *testing.T, tr *syscalls.Tracer, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tr.State(pid).Followed() {
		if time.Now().After(deadline) {
			t.Fatalf("process %d exited but is still followed: %+v", pid, tr.State(pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type shell struct {
	*exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startShell starts a shell that runs the commands written to it.
func startShell(t *testing.T) *shell {
	t.Helper()
	cmd := exec.Command("sh")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &shell{Cmd: cmd, stdin: in, out: bufio.NewReader(out)}
}

func (s *shell) readPID(t *testing.T) int {
	t.Helper()
	line, err := s.out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
