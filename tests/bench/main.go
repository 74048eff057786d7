// Command bench measures what zerotrace costs a traced Go service, in one
// run on this machine: latency of sequential keep-alive requests and
// throughput with concurrent clients, without and with zerotrace attached,
// plus the cost of one bare uprobe hit. It prints the ratios.
//
// Run it as root from the repository root with `make bench`.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
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
	rounds     = flag.Int("rounds", 3, "untraced/traced pairs; medians are reported, which tames this noisy machine")
	hop        = flag.Bool("hop", true, "also measure a traced client→server hop between two services")
	loadRate   = flag.Float64("load-rate", 20000, "requests per second of the steady-load phase that measures the agent's own CPU and memory")
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
	if *memoryOnly {
		return runMemory()
	}
	costs, err := calibrate.UprobeHit(1_000_000)
	if err != nil {
		return fmt.Errorf("measuring a bare uprobe hit: %w", err)
	}
	printHeader(costs)

	app, addr, err := startApp()
	if err != nil {
		return err
	}
	defer stopApp(app)
	single := scenario{
		title: "one traced service (GET /bench, a trivial handler)",
		url:   "http://" + addr + "/bench",
		pids:  []int{app.Process.Pid},
		spans: 1,
	}
	if err := single.run(); err != nil {
		return err
	}
	single.print()
	errs := []error{single.err()}
	if err := syscallTax(); err != nil {
		errs = append(errs, err)
	}

	slow := scenario{
		title:          "one traced service (GET /slow?ms=1, a handler that takes 1 ms)",
		url:            "http://" + addr + "/slow?ms=1",
		pids:           []int{app.Process.Pid},
		spans:          1,
		throughputOnly: true,
	}
	if err := slow.run(); err != nil {
		return err
	}
	fmt.Println()
	slow.print()
	errs = append(errs, slow.err())

	if *hop {
		down, downAddr, err := startApp()
		if err != nil {
			return err
		}
		defer stopApp(down)
		gw, gwAddr, err := startApp("-downstream", "http://"+downAddr)
		if err != nil {
			return err
		}
		defer stopApp(gw)
		chain := scenario{
			title: "a traced client→server hop (GET /chain on a gateway that calls a second service, both traced)",
			url:   "http://" + gwAddr + "/chain?id=1",
			pids:  []int{gw.Process.Pid, down.Process.Pid},
			spans: 3, // gateway server, its client call, the downstream server
		}
		if err := chain.run(); err != nil {
			return err
		}
		fmt.Println()
		chain.print()
		errs = append(errs, chain.err())
	}

	fmt.Println()
	exp, err := runExport(single.url, app.Process.Pid)
	if err != nil {
		return err
	}
	exp.print()
	errs = append(errs, exp.err())

	fmt.Println()
	var loads []loadResult
	r, err := runLoad("JSON lines to a file", single.url, app.Process.Pid, "--output", "json")
	if err != nil {
		return err
	}
	loads = append(loads, r)
	stopJaeger, jaegerURL, err := startJaeger()
	if err != nil {
		return err
	}
	r, err = runLoad("OTLP/HTTP to Jaeger", single.url, app.Process.Pid, "--output", "none", "--otlp-endpoint", jaegerURL)
	stopJaeger()
	if err != nil {
		return err
	}
	loads = append(loads, r)
	printLoad(loads)
	errs = append(errs, runMemory())
	return errors.Join(errs...)
}

// scenario is one traffic shape measured untraced and traced, in
// alternating rounds.
type scenario struct {
	title string
	url   string
	pids  []int // the processes the agent attaches to
	spans int   // spans per request

	// throughputOnly skips the sequential phase: a slow handler's
	// latency is its own.
	throughputOnly bool

	untraced, traced    []phase
	agentCPU            time.Duration
	spansSent, spansGot int
	agentLog            string
	hits                []progHits
}

func (sc *scenario) run() error {
	warm(sc.url)
	for r := range *rounds {
		sc.untraced = append(sc.untraced, measure(fmt.Sprintf("untraced #%d", r+1), sc.url, sc.throughputOnly))

		spansFile, err := os.CreateTemp("", "zerotrace-bench-*.jsonl")
		if err != nil {
			return err
		}
		agent, agentErr, err := startAgent(sc.pids, spansFile)
		if err != nil {
			return err
		}
		cpu0 := processCPU(agent.Process.Pid)
		p := measure(fmt.Sprintf("traced #%d", r+1), sc.url, sc.throughputOnly)
		sc.agentCPU += processCPU(agent.Process.Pid) - cpu0
		sc.traced = append(sc.traced, p)
		if err := agent.Process.Signal(syscall.SIGINT); err != nil {
			return err
		}
		if err := agent.Wait(); err != nil {
			return fmt.Errorf("zerotrace exited with %v:\n%s", err, agentErr.String())
		}
		sc.agentLog = agentErr.String()
		n, err := countLines(spansFile.Name())
		os.Remove(spansFile.Name())
		if err != nil {
			return err
		}
		if *output == "json" {
			sc.spansGot += n
		}
		sc.spansSent += p.requests * sc.spans
	}
	var err error
	if !sc.throughputOnly {
		sc.hits, err = probeHits(sc.pids, sc.url)
	}
	return err
}

// err reports spans that were not delivered.
func (sc *scenario) err() error {
	if *output == "json" && sc.spansGot != sc.spansSent {
		return fmt.Errorf("%s: %d spans expected from the requests sent while attached but %d were delivered", sc.title, sc.spansSent, sc.spansGot)
	}
	return nil
}

func stopApp(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

// progHits is what the kernel's BPF statistics say about one program over
// the hit-counting phase.
type progHits struct {
	name    string
	perReq  float64       // runs per request
	runTime time.Duration // mean run time
	// where says what instructions the program's uprobes are on and how
	// the kernel runs them, from the agent's debug log ("" for programs
	// that are not uprobes).
	where string
}

type progStat struct {
	Name    string `json:"name"`
	RunTime uint64 `json:"run_time_ns"`
	RunCnt  uint64 `json:"run_cnt"`
}

// progStats reads the run counters of every loaded BPF program by name.
func progStats() (map[string]progStat, error) {
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var progs []progStat
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("parsing bpftool prog show: %w", err)
	}
	m := make(map[string]progStat, len(progs))
	for _, p := range progs {
		q := m[p.Name]
		q.Name, q.RunTime, q.RunCnt = p.Name, q.RunTime+p.RunTime, q.RunCnt+p.RunCnt
		m[p.Name] = q
	}
	return m, nil
}

// probeHits counts, in a separate phase so that the timed rounds are not
// disturbed, how often each of the agent's programs runs per request and
// how long one run takes, from the kernel's own statistics
// (kernel.bpf_stats_enabled, switched on only for this phase). Every run
// is one uprobe hit.
func probeHits(pids []int, url string) ([]progHits, error) {
	const sysctl = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(sysctl)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(sysctl, []byte("1"), 0); err != nil {
		return nil, err
	}
	defer os.WriteFile(sysctl, old, 0)
	agent, agentErr, err := startAgentArgs(pids, nil, "--output", *output, "--log-level", "debug")
	if err != nil {
		return nil, err
	}
	before, err := progStats()
	if err != nil {
		return nil, err
	}
	const n = 5000
	c := newClient()
	for range n {
		if err := get(c, url); err != nil {
			return nil, err
		}
	}
	after, err := progStats()
	if err != nil {
		return nil, err
	}
	_ = agent.Process.Signal(syscall.SIGINT)
	if err := agent.Wait(); err != nil {
		return nil, fmt.Errorf("zerotrace exited with %v:\n%s", err, agentErr.String())
	}
	where := uprobeSites(agentErr.String())
	var hits []progHits
	for name, a := range after {
		b := before[name]
		if a.RunCnt == b.RunCnt {
			continue
		}
		runs := a.RunCnt - b.RunCnt
		hits = append(hits, progHits{
			name:    name,
			perReq:  float64(runs) / n,
			runTime: time.Duration((a.RunTime - b.RunTime) / runs),
			where:   where[name],
		})
	}
	slices.SortFunc(hits, func(a, b progHits) int { return strings.Compare(a.name, b.name) })
	return hits, nil
}

// uprobeAttached is the agent's debug line for one uprobe attached
// (cmd/internal/agent, attach.go).
var uprobeAttached = regexp.MustCompile(`msg="uprobe attached" .*program=(\S+) at=(\S+) offset=\S+ instruction=(\S+) cost=(\S+)`)

// uprobeSites says, by program name (whole, as bpftool shows it from the
// program's BTF, and cut to the kernel's 15 characters), which instructions the program's uprobes are on and how the
// kernel runs them: "entry JBE, emulated" or "16 RET, single-stepped".
func uprobeSites(agentLog string) map[string]string {
	type key struct{ prog, at, inst, cost string }
	counts := map[key]int{}
	for _, m := range uprobeAttached.FindAllStringSubmatch(agentLog, -1) {
		counts[key{m[1], m[2], m[3], m[4]}]++
	}
	parts := map[string][]string{}
	for k, n := range counts {
		what := k.inst // a RET
		if k.at == "entry" || k.at == "inside" {
			what = k.at + " " + k.inst
		}
		if n > 1 {
			what = fmt.Sprint(n, "× ", what)
		}
		parts[k.prog] = append(parts[k.prog], what+", "+k.cost)
	}
	out := map[string]string{}
	for p, w := range parts {
		slices.Sort(w)
		out[p] = strings.Join(w, "; ")
		if len(p) > 15 {
			out[p[:15]] = out[p]
		}
	}
	return out
}

func printHits(hits []progHits) {
	fmt.Println("\nuprobe hits per sequential request (kernel BPF statistics, separate phase):")
	total := 0.0
	for _, h := range hits {
		fmt.Printf("  %-20s %5.2f per request, program %s per run", h.name, h.perReq, us(h.runTime))
		if h.where != "" {
			fmt.Printf(", on %s", h.where)
		}
		fmt.Println()
		total += h.perReq
	}
	fmt.Printf("  %-20s %5.2f per request\n", "total", total)
}

// processCPU is the user+system CPU time a process has used so far.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// median returns the phase made of the median of each metric.
func median(name string, ps []phase) phase {
	pick := func(get func(phase) float64) float64 {
		v := make([]float64, len(ps))
		for i, p := range ps {
			v[i] = get(p)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return phase{
		name: name,
		p50:  time.Duration(pick(func(p phase) float64 { return float64(p.p50) })),
		p99:  time.Duration(pick(func(p phase) float64 { return float64(p.p99) })),
		mean: time.Duration(pick(func(p phase) float64 { return float64(p.mean) })),
		rps:  pick(func(p phase) float64 { return p.rps }),
	}
}

func startApp(args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(filepath.Join(*binDir, "sampleapp"), append([]string{"-addr", "127.0.0.1:0"}, args...)...)
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

func startAgent(pids []int, spans *os.File) (*exec.Cmd, *lockedBuffer, error) {
	return startAgentArgs(pids, spans, "--output", *output)
}

// stopAgent interrupts the agent and waits for it to flush and exit.
func stopAgent(cmd *exec.Cmd, stderr *lockedBuffer) error {
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("zerotrace exited with %v:\n%s", err, stderr.String())
	}
	return nil
}

// startAgentArgs starts the agent on pids with the given options and waits
// until it attached.
func startAgentArgs(pids []int, spans *os.File, opts ...string) (*exec.Cmd, *lockedBuffer, error) {
	stderr := &lockedBuffer{}
	args := append([]string{"attach", "--listen", "off"}, opts...)
	for _, pid := range pids {
		args = append(args, "--pid", fmt.Sprint(pid))
	}
	cmd := exec.Command(filepath.Join(*binDir, "zerotrace"), args...)
	if spans != nil { // a nil *os.File in the interface would not be nil
		cmd.Stdout = spans
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting zerotrace: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(stderr.String(), "attached to") < len(pids) {
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

// measure runs the sequential phase (unless throughputOnly), then the
// concurrent one.
func measure(name, url string, throughputOnly bool) phase {
	p := phase{name: name}
	if throughputOnly {
		t := throughput(url, *clients, *duration)
		p.rps, p.requests = t.rps, t.requests
		return p
	}
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

	t := throughput(url, *clients, *duration)
	p.rps = t.rps
	p.requests += t.requests
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

// printHeader says what machine this is and what one uprobe hit costs on it.
func printHeader(costs calibrate.Costs) {
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
	fmt.Printf("bare uprobe hit: %s on an ordinary instruction (single-stepped), %s on an emulated jump, %s on a RET\n\n",
		us(costs.SingleStep), us(costs.Emulated), us(costs.Return))
}

func (sc *scenario) print() {
	fmt.Println(sc.title)
	if sc.throughputOnly {
		for i := range sc.untraced {
			fmt.Printf("  round %d: untraced %.0f req/s, traced %.0f req/s\n", i+1, sc.untraced[i].rps, sc.traced[i].rps)
		}
		base, tr := median("untraced", sc.untraced), median("traced", sc.traced)
		fmt.Printf("throughput kept with %d concurrent clients: %.1f%% of untraced\n", *clients, 100*tr.rps/base.rps)
		if *output == "json" {
			fmt.Printf("spans delivered: %d of %d expected from the requests sent while attached\n", sc.spansGot, sc.spansSent)
		}
		return
	}
	fmt.Printf("%-20s %12s %12s %12s %14s\n", "phase", "seq p50", "seq p99", "seq mean", fmt.Sprintf("req/s (%d cl)", *clients))
	row := func(p phase) {
		fmt.Printf("%-20s %12s %12s %12s %14.0f\n", p.name, us(p.p50), us(p.p99), us(p.mean), p.rps)
	}
	for i := range sc.untraced {
		row(sc.untraced[i])
		row(sc.traced[i])
	}
	base, tr := median("untraced (median)", sc.untraced), median("traced (median)", sc.traced)
	row(base)
	row(tr)
	fmt.Println()
	fmt.Printf("added latency per sequential request: p50 %+.1f µs, mean %+.1f µs\n",
		float64(tr.p50-base.p50)/1e3, float64(tr.mean-base.mean)/1e3)
	fmt.Printf("throughput kept with %d concurrent clients: %.1f%% of untraced\n", *clients, 100*tr.rps/base.rps)
	if sc.spansSent > 0 {
		fmt.Printf("agent CPU: %.1f µs per span\n", float64(sc.agentCPU)/float64(sc.spansSent)/1e3)
	}
	if *output == "json" {
		fmt.Printf("spans delivered: %d of %d expected from the requests sent while attached\n", sc.spansGot, sc.spansSent)
	}
	for _, line := range strings.Split(sc.agentLog, "\n") {
		if strings.Contains(line, "traced ") || strings.Contains(line, "lost") {
			fmt.Println("agent (last round):", strings.TrimSpace(line))
		}
	}
	printHits(sc.hits)
}
