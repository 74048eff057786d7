package testenv

import (
	"errors"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

var errMainThread = errors.New("on the main thread")

// exitedWithin reports whether cmd exits within d.
func exitedWithin(cmd *exec.Cmd, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestStartTied: a child forked from a thread that is then retired gets its
// parent-death signal (the kernel's rule the helper guards against), while
// one started with StartTied outlives any number of retired threads.
func TestStartTied(t *testing.T) {
	// The rule: fork from a locked goroutine, then let it exit locked. Not
	// from the main thread, which the runtime never ends: a goroutine that
	// lands there holds it (unlocked again at the end) and the next one
	// tries elsewhere.
	control := exec.Command("sleep", "60")
	control.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release := make(chan struct{})
	defer close(release)
	for forked := false; !forked; {
		started := make(chan error)
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == syscall.Getpid() {
				started <- errMainThread
				<-release
				runtime.UnlockOSThread()
				return
			}
			started <- control.Start()
		}()
		switch err := <-started; err {
		case nil:
			forked = true
		case errMainThread:
		default:
			t.Fatal(err)
		}
	}
	if !exitedWithin(control, 10*time.Second) {
		control.Process.Kill()
		t.Fatal("a child outlived the thread that forked it: the parent-death signal is not per thread here")
	}

	tied := exec.Command("sleep", "60")
	if err := StartTied(tied, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	defer tied.Process.Kill()
	for range 64 {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
	if exitedWithin(tied, time.Second) {
		t.Fatal("a child started with StartTied died when other threads were retired")
	}
}
