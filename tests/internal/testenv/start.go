package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
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
