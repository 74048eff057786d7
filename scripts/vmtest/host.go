package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zerotrace/zerotrace/scripts/vmtest/internal/vmproto"
	"golang.org/x/sys/unix"
)

// hostBasePath is the payload's PATH after its own bin/ on the host.
const hostBasePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// runHostEntry runs the payload on the host kernel through the same init
// program as the guests, in host mode: a copy of the payload in the work
// directory, a private mount namespace so that the bpffs, tracefs and
// debugfs it mounts vanish with it, and the same results archive.
func runHostEntry(ctx context.Context, o *options, initBin, work, artifacts string, res *kernelResult) {
	dir := filepath.Join(work, hostEntry)
	outDir := filepath.Join(artifacts, hostEntry)
	payload := filepath.Join(dir, "payload")
	for _, d := range []string{dir, outDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			res.fail("%v", err)
			return
		}
	}
	// Payloads run programs as other users too (zerotrace's tests check
	// what an unprivileged user is told), as they can in a guest, whose
	// /payload is world-readable: os.MkdirTemp made the work directory
	// 0700, which would refuse them with EACCES.
	if err := os.Chmod(work, 0o755); err != nil {
		res.fail("%v", err)
		return
	}
	// The payload gets a private copy, as in a guest, so that whatever it
	// writes next to itself never lands in the source tree.
	if err := copyTree(o.payload, payload); err != nil {
		res.fail("copying payload: %v", err)
		return
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		res.KernelRelease = unix.ByteSliceToString(uts.Release[:])
	}
	resultsFile := filepath.Join(dir, "results.stream")
	cfg := vmproto.Config{
		KernelName:     hostEntry,
		HostMode:       true,
		PayloadDir:     payload,
		ResultDir:      filepath.Join(dir, "results"),
		ResultsPath:    resultsFile,
		PathPrefix:     []string{filepath.Join(payload, "bin")},
		BasePath:       hostBasePath,
		TimeoutSeconds: payloadTimeout(o.timeout).Seconds(),
		// Only root can create the namespace; without one the init program
		// leaves the mounts to the payload.
		PrivateMounts: os.Geteuid() == 0,
	}
	if !cfg.PrivateMounts {
		res.note("not root: no private mount namespace")
	}
	cfgPath := filepath.Join(dir, "config.json")
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		res.fail("%v", err)
		return
	}

	res.ConsoleLog = filepath.Join(outDir, "console.log")
	logFile, err := os.Create(res.ConsoleLog)
	if err != nil {
		res.fail("%v", err)
		return
	}
	defer logFile.Close()

	logf("%s: running payload on %s", hostEntry, res.KernelRelease)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, initBin, "-config", cfgPath)
	watch := &consoleWatch{}
	cmd.Stdout = io.MultiWriter(logFile, watch)
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cfg.PrivateMounts {
		// Go makes the new namespace's mounts private before exec, so the
		// payload's mounts never propagate back to the host.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	// The init program puts the payload in its own process group; killing
	// that too on a timeout keeps a hung payload from outliving the run.
	cmd.Cancel = func() error {
		killGroups(cmd.Process.Pid)
		return cmd.Process.Kill()
	}
	watch.start = time.Now()
	err = cmd.Run()
	wall := time.Since(watch.start)
	res.WallSeconds = seconds(wall)
	res.ExitStatus = watch.consoleExit
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.TimedOut = true
		res.fail("payload killed after the %s deadline", o.timeout)
	case ctx.Err() != nil:
		res.fail("interrupted")
	case err != nil:
		res.fail("init program: %v", err)
	}
	collect(res, resultsFile, outDir)
	logf("%s: %s in %s", hostEntry, res.status(), wall.Round(time.Second))
}

// killGroups kills every process group whose leader is a child of pid: the
// payload's group, created by the init program.
func killGroups(pid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if child, err := strconv.Atoi(f); err == nil {
			_ = unix.Kill(-child, unix.SIGKILL)
		}
	}
}

// copyTree copies a directory keeping permissions and symlinks.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		default:
			return fmt.Errorf("%s: only files, directories and symlinks are supported", p)
		}
	})
}
