package main

// The syscall tax: what the kernel-level tracing of one program (a Python
// http.server) costs the syscalls of a process that is not traced, compared
// with the floor of any syscall-level capture on this kernel (an empty
// program on the raw sys_enter and sys_exit tracepoints, attached by the
// bench itself); and what it costs the traced server, as its own clients
// see it.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/probes/calibrate"
)

var (
	tax         = flag.Bool("tax", true, "also measure the syscall tax on an untraced process while a Python server is traced from the kernel")
	taxRounds   = flag.Int("tax-rounds", 7, "rounds of the syscall-tax phase, each running every configuration once")
	taxSyscalls = flag.Int("tax-syscalls", 1_000_000, "syscalls the untraced workload makes per run")
	taxRequests = flag.Int("tax-requests", 1000, "sequential requests to the Python server per run")
)

// taxWorkerEnv makes the bench binary the untraced workload instead
// (taxWorker): its value is the workload's name and syscall count.
const taxWorkerEnv = "ZEROTRACE_BENCH_TAX_WORKER"

func init() {
	if w := os.Getenv(taxWorkerEnv); w != "" {
		if err := taxWorker(w); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// taxWorker makes n syscalls on one thread, pinned to the last CPU, and
// prints the thread's CPU time per syscall in ns: "rw" alternates 1-byte
// reads of /dev/zero and writes to /dev/null (syscalls the tracing hooks),
// "getppid" is a syscall it does not hook. Raw syscalls: no Go scheduler
// work around them.
func taxWorker(spec string) error {
	name, count, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("bad worker spec %q", spec)
	}
	runtime.LockOSThread()
	var cpus unix.CPUSet
	cpus.Set(runtime.NumCPU() - 1)
	_ = unix.SchedSetaffinity(0, &cpus)
	zero, err := unix.Open("/dev/zero", unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	null, err := unix.Open("/dev/null", unix.O_WRONLY, 0)
	if err != nil {
		return err
	}
	var b [1]byte
	p := uintptr(unsafe.Pointer(&b[0]))
	var t0, t1 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0)
	switch name {
	case "rw":
		for range n / 2 {
			syscall.RawSyscall(syscall.SYS_READ, uintptr(zero), p, 1)
			syscall.RawSyscall(syscall.SYS_WRITE, uintptr(null), p, 1)
		}
	case "getppid":
		for range n {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		}
	default:
		return fmt.Errorf("no workload %q", name)
	}
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1)
	fmt.Println(float64(t1.Nano()-t0.Nano()) / float64(n))
	return nil
}

// runWorkload runs the untraced workload as a process of its own and
// returns its CPU time per syscall.
func runWorkload(name string) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", taxWorkerEnv, name, *taxSyscalls))
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("the %s workload: %w", name, err)
	}
	return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
}

var taxWorkloads = []string{"rw", "getppid"}

// taxConfig is one way the host runs while the workload is measured.
type taxConfig struct {
	name  string
	start func() (stop func() error, err error)
	ns    map[string][]float64 // per workload, per round
}

// pyServer is a Python http.server serving one small file.
type pyServer struct {
	cmd  *exec.Cmd
	dir  string
	url  string
	body []byte
}

func startPython() (*pyServer, error) {
	dir, err := os.MkdirTemp("", "zerotrace-bench-py-")
	if err != nil {
		return nil, err
	}
	// Content of its own, to know that the server answering is this one
	// (the machine is shared, and so are its ports).
	tag := make([]byte, 16)
	_, _ = rand.Read(tag)
	body := []byte("zerotrace bench " + hex.EncodeToString(tag) + "\n")
	if err := os.WriteFile(filepath.Join(dir, "index.txt"), body, 0o644); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("python3", "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1", "--directory", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting python3 -m http.server: %w", err)
	}
	s := &pyServer{cmd: cmd, dir: dir, url: fmt.Sprintf("http://127.0.0.1:%d/index.txt", port), body: body}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.get(newClient()); err == nil {
			return s, nil
		} else if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("python3 -m http.server on port %d: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *pyServer) get(c *http.Client) error {
	resp, err := c.Get(s.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, s.body) {
		return fmt.Errorf("another server answers %s (status %d)", s.url, resp.StatusCode)
	}
	return nil
}

func (s *pyServer) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// load sends sequential requests and returns requests/s and the median
// latency.
func (s *pyServer) load(n int) (rps float64, p50 time.Duration, err error) {
	c := newClient()
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for range n {
		t := time.Now()
		if err := s.get(c); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t))
	}
	rps = float64(n) / time.Since(start).Seconds()
	slices.Sort(lat)
	return rps, lat[len(lat)/2], nil
}

// syscallTax runs the phase and prints it.
func syscallTax() error {
	if !*tax {
		return nil
	}
	py, err := startPython()
	if err != nil {
		return err
	}
	defer py.stop()
	var (
		spansSent  int
		spansFiles []string
	)
	defer func() {
		for _, f := range spansFiles {
			os.Remove(f)
		}
	}()
	configs := []*taxConfig{
		{name: "no agent", start: func() (func() error, error) { return func() error { return nil }, nil }},
		{name: "floor: empty program on raw sys_enter/sys_exit", start: func() (func() error, error) {
			f, err := calibrate.SyscallFloor()
			if err != nil {
				return nil, err
			}
			return f.Close, nil
		}},
		{name: "zerotrace tracing a Python http.server", start: func() (func() error, error) {
			f, err := os.CreateTemp("", "zerotrace-bench-tax-*.jsonl")
			if err != nil {
				return nil, err
			}
			spansFiles = append(spansFiles, f.Name())
			agent, agentErr, err := startAgent([]int{py.cmd.Process.Pid}, f)
			f.Close()
			if err != nil {
				return nil, err
			}
			return func() error {
				_ = agent.Process.Signal(syscall.SIGINT)
				if err := agent.Wait(); err != nil {
					return fmt.Errorf("zerotrace exited with %v:\n%s", err, agentErr.String())
				}
				return nil
			}, nil
		}},
	}
	var untracedRPS, tracedRPS []float64
	var untracedP50, tracedP50 []time.Duration
	for r := range *taxRounds {
		// Each round runs every configuration once, starting with a
		// different one, so that a slow patch of the machine does not
		// always hit the same configuration.
		for i := range configs {
			c := configs[(i+r)%len(configs)]
			stop, err := c.start()
			if err != nil {
				return fmt.Errorf("syscall tax, %s: %w", c.name, err)
			}
			if c.ns == nil {
				c.ns = map[string][]float64{}
			}
			for _, w := range taxWorkloads {
				ns, err := runWorkload(w)
				if err != nil {
					stop()
					return err
				}
				c.ns[w] = append(c.ns[w], ns)
			}
			// The traced server's own clients, traced and not.
			if c != configs[1] {
				rps, p50, err := py.load(*taxRequests)
				if err != nil {
					stop()
					return fmt.Errorf("syscall tax, requests to the Python server (%s): %w", c.name, err)
				}
				if c == configs[0] {
					untracedRPS, untracedP50 = append(untracedRPS, rps), append(untracedP50, p50)
				} else {
					tracedRPS, tracedP50 = append(tracedRPS, rps), append(tracedP50, p50)
					spansSent += *taxRequests
				}
			}
			if err := stop(); err != nil {
				return fmt.Errorf("syscall tax, %s: %w", c.name, err)
			}
		}
	}
	spansGot := 0
	for _, f := range spansFiles {
		n, err := countLines(f)
		if err != nil {
			return err
		}
		spansGot += n
	}

	fmt.Printf("\nsyscall tax on a process that is not traced, while zerotrace traces a Python http.server from the kernel\n")
	fmt.Printf("(the process's own CPU time per syscall, %d syscalls per run; medians of %d rounds)\n", *taxSyscalls, *taxRounds)
	fmt.Printf("%-50s %20s %20s\n", "", "1-byte read+write", "getppid (not hooked)")
	base := map[string]float64{}
	floor := map[string]float64{}
	for i, c := range configs {
		fmt.Printf("%-50s", c.name)
		for _, w := range taxWorkloads {
			m := medianOf(c.ns[w])
			switch i {
			case 0:
				base[w] = m
				fmt.Printf(" %20s", fmt.Sprintf("%.0f ns", m))
			case 1:
				floor[w] = m - base[w]
				fmt.Printf(" %20s", fmt.Sprintf("%.0f ns (%+.0f)", m, m-base[w]))
			default:
				fmt.Printf(" %20s", fmt.Sprintf("%.0f ns (%+.0f) %.2f×", m, m-base[w], (m-base[w])/floor[w]))
			}
		}
		fmt.Println()
	}
	added, fl := medianOf(configs[2].ns["rw"])-base["rw"], floor["rw"]
	verdict := "met"
	if added > 1.5*fl {
		verdict = "NOT met"
	}
	fmt.Printf("time added per read/write: %+.0f ns, %.2f× the floor's %+.0f ns (target at most 1.5×: %s)\n", added, added/fl, fl, verdict)
	ur, tr := medianOf(untracedRPS), medianOf(tracedRPS)
	up, tp := medianDuration(untracedP50), medianDuration(tracedP50)
	fmt.Printf("the traced Python server, %d sequential requests per run from a Go client: %.0f req/s untraced, %.0f traced (%.1f%% kept); p50 %s untraced, %s traced (%+.1f µs)\n",
		*taxRequests, ur, tr, 100*tr/ur, us(up), us(tp), float64(tp-up)/1e3)
	fmt.Printf("spans delivered: %d of %d requests sent while traced\n", spansGot, spansSent)
	if spansGot != spansSent {
		return errors.New("syscall tax: spans of the Python server were lost")
	}
	return nil
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDuration(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
