package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerotrace/zerotrace/scripts/vmtest/internal/vmproto"
)

// vmOptions are the QEMU settings shared by all guests.
type vmOptions struct {
	qemu    string
	cpu     string
	smp     int
	memMB   int
	cmdline string // appended to the built-in kernel command line
	// tcgThread is QEMU's TCG threading, "single" or "multi" (see the
	// -tcg-thread flag).
	tcgThread string
}

// consoleWatch records when init's markers appeared on the console (host
// wall time since QEMU started) and the exit status init printed.
type consoleWatch struct {
	mu           sync.Mutex
	start        time.Time
	initAt       time.Duration
	payloadAt    time.Duration
	exitAt       time.Duration
	consoleExit  *int
	partial      []byte
	consoleBytes int64
}

// Write scans console output line by line for init's markers.
func (c *consoleWatch) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Since(c.start)
	c.consoleBytes += int64(len(p))
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(c.partial[:i]), "\r")
		c.partial = c.partial[i+1:]
		// Markers may follow kernel messages on the same line when printk
		// interleaves with init's output, so look anywhere in the line.
		switch {
		case strings.Contains(line, vmproto.MarkerInit) && c.initAt == 0:
			c.initAt = now
		case strings.Contains(line, vmproto.MarkerPayloadStart) && c.payloadAt == 0:
			c.payloadAt = now
		case strings.Contains(line, vmproto.MarkerExit):
			_, rest, _ := strings.Cut(line, vmproto.MarkerExit)
			if f := strings.Fields(rest); len(f) > 0 {
				if v, err := strconv.Atoi(f[0]); err == nil {
					c.consoleExit = &v
					c.exitAt = now
				}
			}
		}
	}
	// A guest printing without newlines must not grow this buffer forever.
	if len(c.partial) > 64<<10 {
		c.partial = c.partial[len(c.partial)-4096:]
	}
	return len(p), nil
}

// vmOutcome is what the host saw of one guest.
type vmOutcome struct {
	wall     time.Duration
	watch    *consoleWatch
	timedOut bool
	qemuErr  error
}

// runVM boots one guest and waits for it to power off or for the deadline.
// The console (ttyS0) is streamed through the host so that boot and payload
// start are timed as they happen and saved to consoleLog; the results port
// (ttyS1) goes straight to a file that is parsed afterwards.
func runVM(ctx context.Context, opts vmOptions, kernel, initrd, consoleLog, resultsFile string, timeout time.Duration) *vmOutcome {
	cmdline := "console=ttyS0,115200 rdinit=/init panic=-1 oops=panic no_timer_check random.trust_cpu=on mitigations=off"
	if opts.cmdline != "" {
		cmdline += " " + opts.cmdline
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		// KVM hangs on our machines and is absent in CI: TCG only.
		"-accel", "tcg,thread=" + opts.tcgThread,
		"-machine", "pc",
		"-cpu", opts.cpu,
		"-smp", strconv.Itoa(opts.smp),
		"-m", strconv.Itoa(opts.memMB),
		"-display", "none",
		"-kernel", kernel,
		"-initrd", initrd,
		"-append", cmdline,
		"-chardev", "stdio,id=con,signal=off",
		"-serial", "chardev:con",
		"-chardev", "file,id=res,path=" + resultsFile,
		"-serial", "chardev:res",
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, opts.qemu, args...)
	cmd.Stdin = nil
	out := &vmOutcome{watch: &consoleWatch{}}
	logFile, err := os.Create(consoleLog)
	if err != nil {
		out.qemuErr = err
		return out
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "# %s %s\n", opts.qemu, quoteArgs(args))
	cmd.Stdout = io.MultiWriter(logFile, out.watch)
	cmd.Stderr = cmd.Stdout
	// After a kill, give the output copier a moment and then stop waiting.
	cmd.WaitDelay = 5 * time.Second

	out.watch.start = time.Now()
	err = cmd.Run()
	out.wall = time.Since(out.watch.start)
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		out.timedOut = true
	}
	out.qemuErr = err
	return out
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
