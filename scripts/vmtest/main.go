// Command vmtest runs a test payload on a matrix of Debian kernels, each
// booted under QEMU (TCG) from an initramfs built here, and on the host
// kernel, then reports per kernel. See README.md for the payload contract.
//
//	go run ./scripts/vmtest -payload DIR [-kernels 5.10,6.1,6.12,host] [-timeout 8m] [-out results.json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zerotrace/zerotrace/scripts/vmtest/internal/vmproto"
)

// cacheEnv overrides the default cache directory.
const cacheEnv = "ZEROTRACE_VMTEST_CACHE"

type options struct {
	payload  string
	kernels  string
	timeout  time.Duration
	out      string
	keep     bool
	parallel int
	modules  string
	hostBins string
	cacheDir string
	refresh  bool
	vm       vmOptions
}

func main() {
	var o options
	flag.StringVar(&o.payload, "payload", "", "payload directory (required); its executable `run` is started in each guest")
	flag.StringVar(&o.kernels, "kernels", "5.10,6.1,6.12,host", "comma-separated kernels to test; \"host\" runs on this machine's kernel")
	flag.DurationVar(&o.timeout, "timeout", 8*time.Minute, "deadline per kernel, boot included; a guest still running then is killed and fails")
	flag.StringVar(&o.out, "out", "", "results JSON file; console logs and returned files go to a directory next to it (default: in the work dir, which is then kept)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (initramfs images, configs) for debugging")
	flag.IntVar(&o.parallel, "parallel", 2, "guests run at once (2 with -smp 2 measured fastest on 2 cores, see README.md)")
	flag.StringVar(&o.modules, "modules", "veth,sch_ingress,cls_bpf", "kernel modules loaded in each guest before the payload (dependencies are added)")
	flag.StringVar(&o.hostBins, "host-bins", "/usr/sbin/bpftool", "host executables copied into the guests at the same path, with their shared libraries")
	flag.StringVar(&o.cacheDir, "cache", envOr(cacheEnv, "/var/cache/zerotrace-vmtest"), "download cache (env "+cacheEnv+")")
	flag.BoolVar(&o.refresh, "refresh", false, "ask apt for newer kernel packages instead of reusing cached ones")
	flag.StringVar(&o.vm.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	flag.StringVar(&o.vm.cpu, "cpu", "max", "QEMU CPU model")
	// Multi-threaded TCG crashed Debian's 6.12 kernel in about half of the
	// runs that attach and detach uprobes repeatedly: "Oops: int3" in
	// __schedule, at a jump label the kernel had just finished patching (the
	// perf_event static key, flipped by each attach), i.e. a vCPU ran code
	// that another vCPU had already rewritten. Single-threaded TCG runs
	// all vCPUs of a guest in turn on one host thread and did not crash in
	// the same runs; it costs about 1.6x in guest speed, which running
	// guests in parallel recovers (see README.md).
	flag.StringVar(&o.vm.tcgThread, "tcg-thread", "single", "QEMU TCG threading: single (all vCPUs on one host thread) or multi (one thread per vCPU)")
	flag.IntVar(&o.vm.smp, "smp", 2, "vCPUs per guest")
	flag.IntVar(&o.vm.memMB, "mem", 1536, "guest memory in MiB (the initramfs, payload included, lives in it)")
	flag.StringVar(&o.vm.cmdline, "append", "", "extra kernel command line arguments")
	flag.Parse()

	if err := validate(&o); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := run(ctx, &o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func validate(o *options) error {
	if o.payload == "" {
		return errors.New("-payload is required")
	}
	abs, err := filepath.Abs(o.payload)
	if err != nil {
		return err
	}
	o.payload = abs
	fi, err := os.Stat(filepath.Join(abs, "run"))
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("payload: %s/run must be an executable file", abs)
	}
	if o.vm.tcgThread != "single" && o.vm.tcgThread != "multi" {
		return fmt.Errorf("-tcg-thread must be single or multi, not %q", o.vm.tcgThread)
	}
	if o.parallel < 1 || o.vm.smp < 1 || o.vm.memMB < 256 {
		return errors.New("-parallel and -smp must be at least 1, -mem at least 256")
	}
	if o.timeout < 30*time.Second {
		return errors.New("-timeout must be at least 30s: a TCG boot alone takes 10s or more")
	}
	_, err = selectKernels(o.kernels)
	return err
}

// logf reports progress on stderr, keeping stdout for the final table.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s vmtest: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// run executes the whole matrix and reports whether any kernel failed.
func run(ctx context.Context, o *options) (failed bool, err error) {
	names, _ := selectKernels(o.kernels)
	work, err := os.MkdirTemp("", "zerotrace-vmtest-")
	if err != nil {
		return false, err
	}
	if o.out == "" {
		o.out = filepath.Join(work, "results.json")
		o.keep = true
	}
	if o.out, err = filepath.Abs(o.out); err != nil {
		return false, err
	}
	if o.keep {
		logf("work directory %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}
	artifacts := strings.TrimSuffix(o.out, ".json") + ".d"
	if err := os.RemoveAll(artifacts); err != nil {
		return false, err
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return false, err
	}

	start := time.Now()
	initBin := filepath.Join(work, "init")
	logf("building guest init")
	if err := buildInit(initBin); err != nil {
		return false, err
	}

	results := make(map[string]*kernelResult, len(names))
	var vmNames []string
	for _, n := range names {
		results[n] = &kernelResult{Name: n, Files: []string{}}
		if n != hostEntry {
			vmNames = append(vmNames, n)
		}
	}

	var (
		base    *rootfs
		fetched = map[string]*fetchedKernel{}
	)
	if len(vmNames) > 0 {
		c, err := newCache(o.cacheDir, o.refresh, logf)
		if err != nil {
			return false, err
		}
		unlock, err := c.lock()
		if err != nil {
			return false, err
		}
		defer unlock()
		busybox, err := findBusybox(c)
		if err != nil {
			return false, err
		}
		for _, n := range vmNames {
			spec := lookupKernel(n)
			t := time.Now()
			k, err := c.fetchKernel(*spec)
			if err != nil {
				results[n].fail("kernel download failed: %v", err)
				logf("%s: %v", n, err)
				continue
			}
			logf("%s: %s %s (release %s) ready in %s", n, k.Package, k.Version, k.Release, time.Since(t).Round(time.Millisecond))
			fetched[n] = k
		}
		if base, err = baseRootfs(initBin, busybox, splitList(o.hostBins), o.payload); err != nil {
			return false, err
		}
	}

	// The host entry runs alone, first: running it beside a guest would
	// slow both and make the host timings meaningless.
	if _, ok := results[hostEntry]; ok && ctx.Err() == nil {
		runHostEntry(ctx, o, initBin, work, artifacts, results[hostEntry])
	}

	jobs := make(chan string)
	var wg sync.WaitGroup
	for range o.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				runGuest(ctx, o, base, fetched[n], work, artifacts, results[n])
			}
		}()
	}
	for _, n := range vmNames {
		if fetched[n] == nil {
			continue
		}
		if ctx.Err() != nil {
			results[n].fail("interrupted before start")
			continue
		}
		jobs <- n
	}
	close(jobs)
	wg.Wait()

	ordered := make([]*kernelResult, 0, len(names))
	for _, n := range names {
		ordered = append(ordered, results[n])
	}
	report := &matrixReport{
		Payload:      o.payload,
		Started:      start.UTC().Format(time.RFC3339),
		TotalSeconds: seconds(time.Since(start)),
		Parallel:     o.parallel,
		SMP:          o.vm.smp,
		MemMB:        o.vm.memMB,
		Artifacts:    artifacts,
		Kernels:      ordered,
		Failed:       []string{},
	}
	for _, r := range ordered {
		if !r.OK {
			report.Failed = append(report.Failed, r.Name)
		}
	}
	b, _ := json.MarshalIndent(report, "", "  ")
	if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
		return true, err
	}
	printTable(os.Stdout, ordered)
	for _, r := range ordered {
		if !r.OK && r.ConsoleLog != "" {
			printTail(os.Stderr, r.Name, r.ConsoleLog, 40)
		}
	}
	fmt.Printf("\nresults: %s\nartifacts: %s\ntotal: %s\n", o.out, artifacts, time.Since(start).Round(time.Second))
	return len(report.Failed) > 0, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// buildInit compiles guestinit statically. The package is found next to
// this file's source when run with "go run" from anywhere, and by import
// path from the module otherwise.
func buildInit(dst string) error {
	target := "github.com/zerotrace/zerotrace/scripts/vmtest/guestinit"
	dir := ""
	if _, file, _, ok := runtime.Caller(0); ok && dirExists(filepath.Join(filepath.Dir(file), "guestinit")) {
		dir, target = filepath.Dir(file), "./guestinit"
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", dst, target)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building guest init: %w\n%s", err, out)
	}
	return nil
}

// findBusybox prefers the host's busybox-static; without it the package is
// fetched into the cache like the kernels, so a machine whose setup missed
// it still works.
func findBusybox(c *cache) (string, error) {
	const hostBusybox = "/bin/busybox"
	if err := checkStatic(hostBusybox); err == nil {
		return hostBusybox, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		logf("%s is not usable (%v): using busybox-static from the cache", hostBusybox, err)
	}
	root, err := c.fetchTool("bookworm", "busybox-static")
	if err != nil {
		return "", fmt.Errorf("no static busybox: install busybox-static, or let apt reach Debian: %w", err)
	}
	bb := filepath.Join(root, "bin", "busybox")
	if err := checkStatic(bb); err != nil {
		return "", fmt.Errorf("%s: %w", bb, err)
	}
	return bb, nil
}

// payloadTimeout leaves the init program time to archive and send the
// results before the runner's own deadline kills the guest, so a payload
// that overruns still returns its partial results.
func payloadTimeout(total time.Duration) time.Duration {
	reserve := min(max(total/10, 20*time.Second), 60*time.Second)
	return total - reserve
}

// runGuest prepares one kernel's initramfs, boots it and collects results.
func runGuest(ctx context.Context, o *options, base *rootfs, k *fetchedKernel, work, artifacts string, res *kernelResult) {
	res.Package, res.PackageVersion, res.KernelRelease = k.Package, k.Version, k.Release
	dir := filepath.Join(work, res.Name)
	outDir := filepath.Join(artifacts, res.Name)
	for _, d := range []string{dir, outDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			res.fail("%v", err)
			return
		}
	}

	r := base.clone()
	var guestModules []string
	if mods := splitList(o.modules); len(mods) > 0 {
		if k.ModulesDir == "" {
			res.note("package has no modules directory")
		} else {
			idx, err := newModuleIndex(filepath.Join(k.Root, k.ModulesDir), filepath.Join(k.Root, "vmtest-aliases.json"))
			if err != nil {
				res.fail("%v", err)
				return
			}
			prepared, notes, err := idx.prepare(mods, k.Release, filepath.Join(dir, "modules"))
			for _, n := range notes {
				res.note("%s", n)
			}
			if err != nil {
				res.fail("preparing modules: %v", err)
				return
			}
			for _, m := range prepared {
				r.addHostFile(m.GuestPath, m.File, 0o644)
				guestModules = append(guestModules, m.GuestPath)
			}
		}
	}
	if k.Config != "" {
		// bpftool feature probe reads the kernel config from /boot.
		r.addHostFile("/boot/config-"+k.Release, filepath.Join(k.Root, k.Config), 0o644)
	}
	cfg := vmproto.Config{
		KernelName:     res.Name,
		PayloadDir:     guestPayloadDir,
		ResultDir:      guestResultDir,
		ResultsPath:    "/dev/ttyS1",
		Modules:        guestModules,
		PathPrefix:     []string{guestPayloadDir + "/bin"},
		BasePath:       guestBasePath,
		TimeoutSeconds: payloadTimeout(o.timeout).Seconds(),
	}
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	r.addBytes(guestConfig, cfgJSON, 0o644)

	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeFileWith(initrd, r.writeCPIO); err != nil {
		res.fail("building initramfs: %v", err)
		return
	}
	if fi, err := os.Stat(initrd); err == nil {
		res.InitramfsMB = float64(fi.Size()) / (1 << 20)
	}

	logf("%s: booting %s", res.Name, k.Release)
	res.ConsoleLog = filepath.Join(outDir, "console.log")
	resultsFile := filepath.Join(dir, "results.stream")
	vm := runVM(ctx, o.vm, filepath.Join(k.Root, k.Vmlinuz), initrd, res.ConsoleLog, resultsFile, o.timeout)
	res.WallSeconds = seconds(vm.wall)
	w := vm.watch
	if w.initAt > 0 {
		res.BootSeconds = seconds(w.initAt)
	}
	res.ExitStatus = w.consoleExit

	switch {
	case vm.timedOut:
		res.TimedOut = true
		res.fail("guest killed after the %s deadline", o.timeout)
	case ctx.Err() != nil:
		res.fail("interrupted")
	case vm.qemuErr != nil:
		res.note("qemu: %v", vm.qemuErr)
	}
	if w.initAt == 0 {
		res.fail("init never started (kernel did not boot or could not run /init)")
	}
	for _, line := range scanConsole(res.ConsoleLog) {
		if strings.HasPrefix(line, "Kernel panic") {
			res.fail("kernel: %s", line)
		} else {
			res.note("kernel: %s", line)
		}
	}
	collect(res, resultsFile, outDir)
	logf("%s: %s in %s", res.Name, res.status(), vm.wall.Round(time.Second))
}

// writeFileWith creates path and fills it with fill.
func writeFileWith(path string, fill func(w io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
