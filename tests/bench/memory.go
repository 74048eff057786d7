package main

// The memory phase: what the agent holds (VmRSS, once attached and after
// traffic) and the most it held (VmHWM, the peak while it parsed the
// binaries), attached to one small service, to a large binary, to two
// processes of that binary, and to several different binaries. The large
// binary is Jaeger (121 MB with DWARF), which scripts/setup.sh builds; NATS
// server and PocketBase come from scripts/build-program.sh like in the
// real-program tests.

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

var (
	memory     = flag.Bool("memory", true, "also measure the agent's memory attached to small, large and several binaries")
	memoryOnly = flag.Bool("memory-only", false, "measure only the agent's memory")
)

// memProgram is a program the memory phase traces: how to build it, start
// it on free ports, and send it a request.
type memProgram struct {
	name  string
	build func() (string, error)
	start func(bin string, port int, dir string) *exec.Cmd
	path  string // the request sent to it
}

var memPrograms = map[string]memProgram{
	"sampleapp": {
		name:  "sample app",
		build: func() (string, error) { return filepath.Abs(filepath.Join(*binDir, "sampleapp")) },
		start: func(bin string, port int, _ string) *exec.Cmd {
			return exec.Command(bin, "-addr", fmt.Sprintf("127.0.0.1:%d", port))
		},
		path: "/hello",
	},
	"jaeger": {
		name:  "Jaeger",
		build: func() (string, error) { return buildProgram("jaeger") },
		start: func(bin string, port int, dir string) *exec.Cmd {
			cfg := filepath.Join(dir, "jaeger.yaml")
			otlp, grpc := freePort(), freePort()
			_ = os.WriteFile(cfg, []byte(testenv.JaegerConfig(port, grpc, otlp)), 0o644)
			return exec.Command(bin, "--config", "file:"+cfg)
		},
		path: "/api/services",
	},
	"nats-server": {
		name:  "NATS server",
		build: func() (string, error) { return buildProgram("nats-server") },
		start: func(bin string, port int, _ string) *exec.Cmd {
			return exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(freePort()), "-m", strconv.Itoa(port))
		},
		path: "/varz",
	},
	"pocketbase": {
		name:  "PocketBase",
		build: func() (string, error) { return buildProgram("pocketbase") },
		start: func(bin string, port int, dir string) *exec.Cmd {
			return exec.Command(bin, "serve", "--http", fmt.Sprintf("127.0.0.1:%d", port), "--dir", filepath.Join(dir, "pb_data"))
		},
		path: "/api/health",
	},
}

// memCase is one set of processes traced by one agent.
type memCase struct {
	title    string
	programs []string
	idle     int64 // VmRSS once attached, before any request, bytes
	rss, hwm int64 // VmRSS after the requests, VmHWM, bytes
	attach   time.Duration
}

// runMemory runs the memory phase and prints its table.
func runMemory() error {
	if !*memory && !*memoryOnly {
		return nil
	}
	cases := []*memCase{
		{title: "one sample app", programs: []string{"sampleapp"}},
		{title: "Jaeger", programs: []string{"jaeger"}},
		{title: "two processes of Jaeger", programs: []string{"jaeger", "jaeger"}},
		{title: "Jaeger, NATS, PocketBase, sample app", programs: []string{"jaeger", "nats-server", "pocketbase", "sampleapp"}},
	}
	bins := map[string]string{}
	for _, c := range cases {
		for _, p := range c.programs {
			if _, ok := bins[p]; ok {
				continue
			}
			bin, err := memPrograms[p].build()
			if err != nil {
				return fmt.Errorf("memory phase: building %s: %w", p, err)
			}
			bins[p] = bin
		}
	}
	for _, c := range cases {
		if err := c.run(bins); err != nil {
			return fmt.Errorf("memory phase, %s: %w", c.title, err)
		}
	}
	fmt.Println()
	fmt.Println("agent memory: VmRSS once attached (idle) and after 300 requests to each process (RSS), peak VmHWM; --inject off")
	fmt.Printf("%-62s %10s %10s %10s %10s\n", "traced", "idle", "RSS", "peak", "attach")
	for _, c := range cases {
		var sizes []string
		for _, p := range c.programs {
			if st, err := os.Stat(bins[p]); err == nil {
				sizes = append(sizes, fmt.Sprintf("%.0f", float64(st.Size())/1e6))
			}
		}
		fmt.Printf("%-62s %7.1f MB %7.1f MB %7.1f MB %9.1fs\n", c.title+" ("+strings.Join(sizes, "+")+" MB)", mb(c.idle), mb(c.rss), mb(c.hwm), c.attach.Seconds())
	}
	fmt.Printf("a further process of the same binary: %+.1f MB idle, %+.1f MB after requests; each of three further binaries: %+.1f MB idle, %+.1f MB after requests\n",
		mb(cases[2].idle-cases[1].idle), mb(cases[2].rss-cases[1].rss), mb(cases[3].idle-cases[1].idle)/3, mb(cases[3].rss-cases[1].rss)/3)
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// run starts the case's programs, attaches one agent to them, sends each
// 300 requests and reads the agent's memory.
func (c *memCase) run(bins map[string]string) error {
	dir, err := os.MkdirTemp("", "zerotrace-bench-mem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			stopApp(p)
		}
	}()
	var urls []string
	var pids []int
	for i, name := range c.programs {
		prog := memPrograms[name]
		port := freePort()
		pdir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			return err
		}
		cmd := prog.start(bins[name], port, pdir)
		cmd.Dir = pdir
		log, err := os.Create(filepath.Join(pdir, "log"))
		if err != nil {
			return err
		}
		defer log.Close()
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", prog.name, err)
		}
		procs = append(procs, cmd)
		url := fmt.Sprintf("http://127.0.0.1:%d%s", port, prog.path)
		if err := waitServing(url, 60*time.Second); err != nil {
			out, _ := os.ReadFile(filepath.Join(pdir, "log"))
			return fmt.Errorf("%s: %w\n%s", prog.name, err, out)
		}
		urls = append(urls, url)
		pids = append(pids, cmd.Process.Pid)
	}

	args := []string{"attach", "--output", "json", "--inject", "off", "--listen", "127.0.0.1:0", "--stats-interval", "0"}
	for _, pid := range pids {
		args = append(args, "--pid", strconv.Itoa(pid))
	}
	agent := exec.Command(filepath.Join(*binDir, "zerotrace"), args...)
	stderr := &lockedBuffer{}
	agent.Stderr = stderr // spans go to /dev/null
	began := time.Now()
	if err := agent.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	defer func() {
		_ = agent.Process.Signal(syscall.SIGINT)
		<-exited
	}()
	deadline := time.After(5 * time.Minute)
	for strings.Count(stderr.String(), "zerotrace: attached to") < len(pids) {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("zerotrace exited (%v) before attaching:\n%s", err, stderr.String())
		case <-deadline:
			return fmt.Errorf("zerotrace did not attach in 5 minutes:\n%s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.attach = time.Since(began)
	time.Sleep(time.Second)
	if c.idle, _, err = procMemory(agent.Process.Pid); err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, url := range urls {
		for range 300 {
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
			}
		}
	}
	time.Sleep(3 * time.Second) // spans exported, queues drained
	c.rss, c.hwm, err = procMemory(agent.Process.Pid)
	return err
}

// procMemory reads VmRSS and VmHWM of pid, in bytes (memoryOf), failing
// when the process is gone.
func procMemory(pid int) (rss, hwm int64, err error) {
	rss, hwm = memoryOf(pid)
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// waitServing waits until url answers.
func waitServing(url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v: %w", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// buildProgram builds (or finds cached) one of the real programs.
func buildProgram(name string) (string, error) {
	out, err := exec.Command("scripts/build-program.sh", name).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("scripts/build-program.sh %s: %w\n%s", name, err, ee.Stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
