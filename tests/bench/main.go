// Command bench measures what zerotrace costs a traced Go service, in one
// run on this machine: latency of sequential keep-alive requests and
// throughput with concurrent clients, without and with zerotrace attached,
// plus the cost of one bare uprobe hit. It prints the ratios.
//
// Run it as root from the repository root with `make bench`.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerotrace/zerotrace/probes/calibrate"
)

var (
	binDir     = flag.String("bin", "bin", "directory holding zerotrace and sampleapp")
	sequential = flag.Int("sequential", 10000, "sequential keep-alive requests per phase")
	clients    = flag.Int("clients", 8, "concurrent clients for the throughput phase")
	duration   = flag.Duration("duration", 5*time.Second, "length of the throughput phase")
	output     = flag.String("output", "json", "zerotrace --output while attached (json counts delivered spans)")
)

type phase struct {
	name     string
	p50, p99 time.Duration
	mean     time.Duration
	rps      float64
	requests int
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	costs, err := calibrate.UprobeHit(1_000_000)
	if err != nil {
		return fmt.Errorf("measuring a bare uprobe hit: %w", err)
	}

	app, addr, err := startApp()
	if err != nil {
		return err
	}
	defer func() {
		_ = app.Process.Signal(syscall.SIGTERM)
		_ = app.Wait()
	}()
	url := "http://" + addr + "/bench"
	warm(url)

	base1 := measure("untraced", url)
	spansFile, err := os.CreateTemp("", "zerotrace-bench-*.jsonl")
	if err != nil {
		return err
	}
	defer os.Remove(spansFile.Name())
	agent, agentErr, err := startAgent(app.Process.Pid, spansFile)
	if err != nil {
		return err
	}
	traced := measure("traced", url)
	if err := agent.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	if err := agent.Wait(); err != nil {
		return fmt.Errorf("zerotrace exited with %v:\n%s", err, agentErr.String())
	}
	base2 := measure("untraced again", url)

	spans, err := countLines(spansFile.Name())
	if err != nil {
		return err
	}

	baseline := phase{
		name: "untraced (mean of both)",
		p50:  (base1.p50 + base2.p50) / 2, p99: (base1.p99 + base2.p99) / 2,
		mean: (base1.mean + base2.mean) / 2, rps: (base1.rps + base2.rps) / 2,
	}
	printReport(costs, []phase{base1, traced, base2}, baseline, traced, spans, agentErr.String())
	if spans != traced.requests {
		return fmt.Errorf("%d requests were sent while attached but %d spans were delivered", traced.requests, spans)
	}
	return nil
}

func startApp() (*exec.Cmd, string, error) {
	cmd := exec.Command(filepath.Join(*binDir, "sampleapp"), "-addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting the sample app: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, "", fmt.Errorf("reading the sample app's address: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		return nil, "", fmt.Errorf("unexpected first line from the sample app: %q", line)
	}
	return cmd, addr, nil
}

// lockedBuffer collects the agent's stderr while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startAgent(pid int, spans *os.File) (*exec.Cmd, *lockedBuffer, error) {
	stderr := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(*binDir, "zerotrace"), "attach", "--pid", fmt.Sprint(pid), "--output", *output)
	cmd.Stdout = spans
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting zerotrace: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "attached to") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, nil, fmt.Errorf("zerotrace did not attach:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, stderr, nil
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func warm(url string) {
	c := newClient()
	for range 2000 {
		_ = get(c, url)
	}
}

// measure runs the sequential phase, then the concurrent one.
func measure(name, url string) phase {
	p := phase{name: name}
	c := newClient()
	lat := make([]time.Duration, 0, *sequential)
	start := time.Now()
	for range *sequential {
		t := time.Now()
		if err := get(c, url); err != nil {
			fmt.Fprintln(os.Stderr, "bench: request failed:", err)
			os.Exit(1)
		}
		lat = append(lat, time.Since(t))
	}
	p.mean = time.Since(start) / time.Duration(*sequential)
	slices.Sort(lat)
	p.p50 = lat[len(lat)/2]
	p.p99 = lat[len(lat)*99/100]
	p.requests = *sequential

	var n, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var wg sync.WaitGroup
	began := time.Now()
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			for ctx.Err() == nil {
				if err := get(c, url); err != nil {
					failed.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	p.rps = float64(n.Load()) / time.Since(began).Seconds()
	p.requests += int(n.Load() + failed.Load())
	if failed.Load() > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d requests failed in phase %s\n", failed.Load(), name)
		os.Exit(1)
	}
	return p
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func printReport(costs calibrate.Costs, phases []phase, base, traced phase, spans int, agentLog string) {
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	release := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		release = append(release, byte(c))
	}
	fmt.Printf("machine: %d cores, %s, Linux %s, %s\n", runtime.NumCPU(), cpuModel(), release, runtime.Version())
	hit := costs.SingleStep
	fmt.Printf("bare uprobe hit: %s on an ordinary instruction (single-stepped), %s on an emulated jump, %s on a RET\n",
		us(costs.SingleStep), us(costs.Emulated), us(costs.Return))
	fmt.Printf("zerotrace per request: entry probe on an emulated jump + 1 RET probe = %s expected\n\n", us(costs.Emulated+costs.Return))
	fmt.Printf("%-26s %12s %12s %12s %14s\n", "phase", "seq p50", "seq p99", "seq mean", fmt.Sprintf("req/s (%d cl)", *clients))
	for _, p := range append(phases, base) {
		fmt.Printf("%-26s %12s %12s %12s %14.0f\n", p.name, us(p.p50), us(p.p99), us(p.mean), p.rps)
	}
	fmt.Println()
	fmt.Printf("added latency per request: p50 %+.1f µs, mean %+.1f µs (%.1f bare uprobe hits)\n",
		float64(traced.p50-base.p50)/1e3, float64(traced.mean-base.mean)/1e3, float64(traced.mean-base.mean)/float64(hit))
	fmt.Printf("throughput kept: %.1f%% of untraced\n", 100*traced.rps/base.rps)
	fmt.Printf("spans delivered: %d of %d requests sent while attached\n", spans, traced.requests)
	for _, line := range strings.Split(agentLog, "\n") {
		if strings.Contains(line, "traced ") || strings.Contains(line, "lost") {
			fmt.Println("agent:", strings.TrimSpace(line))
		}
	}
}
