package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// starts carries commands to the one goroutine that starts children bound
// to this process's lifetime.
var (
	startsOnce sync.Once
	starts     chan startJob
)

type startJob struct {
	cmd  *exec.Cmd
	done chan error
}

// StartTied starts cmd so that the kernel sends it sig when the test
// process dies (a "go test" timeout, a crash), so that no server outlives
// its test.
//
// Linux sends that signal when the *thread* that forked the child ends, not
// the process, and the Go runtime ends a thread whenever a goroutine exits
// while locked to it. Forking from an arbitrary thread would let any such
// goroutine, anywhere in the test binary, kill the child mid-test; every
// child is therefore forked from one thread that stays locked, and alive,
// for as long as the test binary runs.
func StartTied(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	startsOnce.Do(func() {
		starts = make(chan startJob)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives on
			for j := range starts {
				j.done <- j.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	starts <- startJob{cmd, done}
	return <-done
}

// ServerSpec says how RunServer runs a helper server (a database, a cache).
type ServerSpec struct {
	Name string // in messages: "Redis", "MariaDB"
	// Ready is polled until it succeeds: the server answers a client.
	Ready func() error
	// ReadyTimeout bounds that wait (scaled by TimeoutScaleEnv);
	// StopTimeout, the wait for SIGTERM to end it before SIGKILL.
	ReadyTimeout, StopTimeout time.Duration
}

// RunServer starts cmd tied to the test process (StartTied), its output kept
// for failure messages, and returns once spec.Ready succeeds. The test fails
// if the server cannot start, exits, or is not ready in time; at the test's
// end the server is stopped.
func RunServer(t testing.TB, cmd *exec.Cmd, spec ServerSpec) {
	t.Helper()
	out := NewOutputTail()
	cmd.Stdout, cmd.Stderr = out, out
	if err := StartTied(cmd, syscall.SIGKILL); err != nil {
		t.Fatalf("starting %s (scripts/setup.sh installs it): %v", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(spec.StopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(Timeout(t, spec.ReadyTimeout))
	for {
		err := spec.Ready()
		if err == nil {
			t.Logf("%s started (pid %d)", spec.Name, cmd.Process.Pid)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v: %v\n%s", spec.Name, spec.ReadyTimeout, err, out.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited at start-up: %v\n%s", spec.Name, err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
