// Command guestinit is the /init of the vmtest guests: it prepares the
// minimal system a BPF test needs (proc, sysfs, devtmpfs, bpffs, tracefs,
// debugfs, cgroup2, loopback, kernel modules), runs the payload with a
// deadline, sends the results archive to the host over the second serial
// port and powers the VM off.
//
// With -host it instead runs the same payload on the host kernel, inside a
// private mount namespace prepared by the runner, so that the "host" matrix
// entry goes through exactly the same code and reports the same way.
//
// It must be built with CGO_ENABLED=0: the guest has no C library for it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/scripts/vmtest/internal/vmproto"
)

// maxOutputCapture bounds the payload output carried in the results archive;
// the full output is on the console log anyway, and an endless log must not
// make the serial transfer outlive the deadline.
const maxOutputCapture = 8 << 20

func main() {
	configPath := flag.String("config", "/vmtest/config.json", "runner-provided configuration")
	flag.Parse()

	guest := os.Getpid() == 1
	if guest {
		// Whatever goes wrong below, a guest must end by powering off: a
		// returning or panicking PID 1 would only panic the kernel, which
		// looks like a crash instead of a clear message.
		defer func() {
			if r := recover(); r != nil {
				fmt.Printf("vmtest init: panic: %v\n", r)
			}
			powerOff()
		}()
	}
	if err := run(*configPath, guest); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v\n", err)
		if !guest {
			os.Exit(1)
		}
	}
}

// run does the whole job; it returns only errors that prevent reporting.
func run(configPath string, guest bool) error {
	meta := &vmproto.Meta{ExitStatus: -1}
	if guest {
		meta.Notes = append(meta.Notes, mountBase()...)
		meta.UptimeAtInit = uptime()
	}
	fmt.Printf("%s uptime=%.2f\n", vmproto.MarkerInit, meta.UptimeAtInit)

	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	var cfg vmproto.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("decoding config: %w", err)
	}

	if guest {
		meta.Notes = append(meta.Notes, mountBPFSystems(true)...)
		if err := loopbackUp(); err != nil {
			meta.Notes = append(meta.Notes, "bringing up lo: "+err.Error())
		}
		if len(cfg.Modules) > 0 {
			// With modules.dep and modules.alias for the packed modules,
			// the kernel's own requests (request_module through
			// /sbin/modprobe, busybox's) find them too.
			if out, err := exec.Command("/bin/depmod").CombinedOutput(); err != nil {
				meta.Notes = append(meta.Notes, fmt.Sprintf("depmod: %v: %s", err, strings.TrimSpace(string(out))))
			}
		}
		meta.Modules = loadModules(cfg.Modules)
	} else if cfg.PrivateMounts {
		meta.Notes = append(meta.Notes, mountBPFSystems(false)...)
	} else {
		// Mounting here would change the host for everyone: leave it to the
		// payload and say so.
		meta.Notes = append(meta.Notes, "not in a private mount namespace: bpffs/tracefs/debugfs left as they are")
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		meta.KernelRelease = unix.ByteSliceToString(uts.Release[:])
	}

	timeout := time.Duration(cfg.TimeoutSeconds * float64(time.Second))
	if guest {
		// The runner's deadline started when QEMU did, about when the guest
		// clock started: count the boot against the payload's share.
		timeout -= time.Duration(uptime() * float64(time.Second))
	}
	output := runPayload(&cfg, meta, timeout)

	// Meta is archived last so that it can carry notes about archiving.
	archive := vmproto.NewArchive()
	if err := archive.AddBytes(vmproto.OutputName, output); err != nil {
		return err
	}
	skipped, err := archive.AddTree(cfg.ResultDir, vmproto.ResultsPrefix)
	if err != nil {
		meta.Notes = append(meta.Notes, "archiving results: "+err.Error())
	}
	for _, s := range skipped {
		meta.Notes = append(meta.Notes, "result not returned: "+s)
	}
	metaJSON, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := archive.AddBytes(vmproto.MetaName, metaJSON); err != nil {
		return err
	}
	data, err := archive.Bytes()
	if err != nil {
		return fmt.Errorf("finishing results archive: %w", err)
	}
	// Printed before the results so that the exit status survives a
	// transfer cut short by the runner's deadline.
	fmt.Printf("%s %d\n", vmproto.MarkerExit, meta.ExitStatus)
	if guest {
		fmt.Printf("vmtest init: sending %d bytes of results\n", len(data))
	}
	if err := sendResults(cfg.ResultsPath, data, guest); err != nil {
		return fmt.Errorf("sending results: %w", err)
	}
	return nil
}

// mountBase mounts what every later step needs. Failures are returned as
// notes: the payload may still run and explain more than init could.
func mountBase() []string {
	var notes []string
	for _, m := range []struct{ src, dst, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"devpts", "/dev/pts", "devpts", "mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	} {
		if err := mount(m.src, m.dst, m.fstype, m.data); err != nil {
			notes = append(notes, err.Error())
		}
	}
	if err := os.MkdirAll("/tmp", 0o1777); err != nil {
		notes = append(notes, err.Error())
	}
	// The initramfs' /tmp is created 0755 by the kernel's cpio unpacker in
	// some versions whatever the archive says: make it world-writable.
	_ = os.Chmod("/tmp", 0o1777)
	return notes
}

// mountBPFSystems mounts the file systems BPF tooling expects. cgroup2 is
// only mounted inside a guest: the host's /sys/fs/cgroup has its own layout
// (hybrid on our machines) that must not be hidden from the payload.
func mountBPFSystems(guest bool) []string {
	mounts := []struct{ src, dst, fstype string }{
		{"bpffs", "/sys/fs/bpf", "bpf"},
		{"tracefs", "/sys/kernel/tracing", "tracefs"},
		{"debugfs", "/sys/kernel/debug", "debugfs"},
	}
	if guest {
		mounts = append(mounts, struct{ src, dst, fstype string }{"cgroup2", "/sys/fs/cgroup", "cgroup2"})
	}
	var notes []string
	for _, m := range mounts {
		if err := mount(m.src, m.dst, m.fstype, ""); err != nil {
			notes = append(notes, err.Error())
		}
	}
	return notes
}

func mount(src, dst, fstype, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, fstype, 0, data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount -t %s %s: %w", fstype, dst, err)
	}
	return nil
}

func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// loopbackUp sets IFF_UP on lo; the kernel then assigns 127.0.0.1 and ::1 by
// itself, which is all the payload's local servers need.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// loadModules loads module files in the given order (the runner put
// dependencies first). A failure is recorded and the rest still load: one
// missing optional module must not hide what the payload can test anyway.
func loadModules(paths []string) map[string]string {
	if len(paths) == 0 {
		return nil
	}
	status := make(map[string]string, len(paths))
	for _, p := range paths {
		name := filepath.Base(p)
		f, err := os.Open(p)
		if err != nil {
			status[name] = err.Error()
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		switch {
		case err == nil:
			status[name] = "loaded"
		case errors.Is(err, unix.EEXIST):
			status[name] = "already loaded"
		default:
			status[name] = "finit_module: " + err.Error()
		}
		fmt.Printf("vmtest init: module %s: %s\n", name, status[name])
	}
	return status
}

// runPayload runs PayloadDir/run and fills in the outcome. It returns the
// captured output.
func runPayload(cfg *vmproto.Config, meta *vmproto.Meta, timeout time.Duration) []byte {
	capture := &cappedBuffer{limit: maxOutputCapture}
	entry := filepath.Join(cfg.PayloadDir, "run")
	if err := os.MkdirAll(cfg.ResultDir, 0o755); err != nil {
		meta.Notes = append(meta.Notes, "creating result dir: "+err.Error())
	}
	if timeout <= 0 {
		meta.Notes = append(meta.Notes, "no time left for the payload after boot")
		meta.TimedOut = true
		return capture.Bytes()
	}

	pathList := append(append([]string{}, cfg.PathPrefix...), cfg.BasePath)
	env := []string{
		"PATH=" + strings.Join(pathList, ":"),
		"KERNEL_NAME=" + cfg.KernelName,
		"RESULT_DIR=" + cfg.ResultDir,
		"PAYLOAD_DIR=" + cfg.PayloadDir,
		"HOME=" + homeDir(cfg),
		"TMPDIR=/tmp",
		"TERM=dumb",
	}
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}

	// The payload writes into a pipe we own instead of one exec.Cmd owns:
	// background processes that keep the pipe open must not keep us waiting
	// once the payload itself has exited.
	pr, pw, err := os.Pipe()
	if err != nil {
		meta.Notes = append(meta.Notes, "creating output pipe: "+err.Error())
		return capture.Bytes()
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.MultiWriter(os.Stdout, capture), pr)
	}()

	cmd := exec.Command(entry)
	cmd.Dir = cfg.PayloadDir
	cmd.Env = env
	cmd.Stdout = pw
	cmd.Stderr = pw
	// A process group of its own lets a timeout or the end of the run kill
	// everything the payload started, not just its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cfg.HostMode {
		// On the host nothing powers off behind a killed init: take the
		// payload down with it.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}

	fmt.Printf("%s timeout=%s\n", vmproto.MarkerPayloadStart, timeout.Round(time.Second))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		fmt.Fprintf(os.Stdout, "vmtest init: starting payload: %v\n", err)
		meta.Notes = append(meta.Notes, "starting payload: "+err.Error())
		<-copied
		pr.Close()
		return capture.Bytes()
	}
	pw.Close()
	pgid := cmd.Process.Pid

	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		fmt.Printf("vmtest init: payload timed out after %s, killing it\n", timeout.Round(time.Second))
		_ = unix.Kill(-pgid, unix.SIGKILL)
	})
	err = cmd.Wait()
	timer.Stop()
	meta.TimedOut = timedOut.Load()
	meta.PayloadSeconds = time.Since(start).Seconds()
	// Leftover background processes (sample servers, a tracer) would keep
	// running on the host or hold the output pipe open: end them all.
	_ = unix.Kill(-pgid, unix.SIGKILL)
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
		meta.Notes = append(meta.Notes, "payload output still open 5s after exit (a process left its process group?)")
	}
	pr.Close()

	var exitErr *exec.ExitError
	switch {
	case err == nil:
		meta.ExitStatus = 0
	case errors.As(err, &exitErr):
		ws, ok := exitErr.Sys().(syscall.WaitStatus)
		if ok && ws.Signaled() {
			meta.ExitStatus = 128 + int(ws.Signal())
			meta.Signal = ws.Signal().String()
		} else {
			meta.ExitStatus = exitErr.ExitCode()
		}
	default:
		meta.Notes = append(meta.Notes, "waiting for payload: "+err.Error())
	}
	return capture.Bytes()
}

func homeDir(cfg *vmproto.Config) string {
	if cfg.HostMode {
		if h := os.Getenv("HOME"); h != "" {
			return h
		}
	}
	return "/root"
}

// sendResults writes the framed archive. Inside a guest the target is a
// serial port: it is switched to raw mode so the tty layer does not rewrite
// bytes, and drained before returning because power-off would drop whatever
// is still queued in the UART.
func sendResults(target string, data []byte, guest bool) error {
	if !guest {
		f, err := os.Create(target)
		if err != nil {
			return err
		}
		if err := vmproto.WriteStream(f, data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	f, err := os.OpenFile(target, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	if t, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, t)
	}
	start := time.Now()
	if err := vmproto.WriteStream(f, data); err != nil {
		return err
	}
	// TCSBRK with a non-zero argument is tcdrain(): wait until sent.
	if err := unix.IoctlSetInt(fd, unix.TCSBRK, 1); err != nil {
		return fmt.Errorf("draining %s: %w", target, err)
	}
	fmt.Printf("vmtest init: sent %d bytes of results in %s\n", len(data), time.Since(start).Round(time.Millisecond))
	return nil
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("vmtest init: power off: %v\n", err)
	}
	// Only reached if power-off failed: the runner's deadline ends the VM.
	select {}
}

// cappedBuffer keeps the first limit bytes written to it and counts the rest.
type cappedBuffer struct {
	mu      sync.Mutex
	buf     []byte
	limit   int
	dropped int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		c.buf = append(c.buf, p[:room]...)
	}
	c.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

// Bytes returns the captured output, with a note if some was dropped.
func (c *cappedBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped == 0 {
		return c.buf
	}
	return append(c.buf, fmt.Sprintf("\n[vmtest: %d more bytes not captured, see the console log]\n", c.dropped)...)
}
