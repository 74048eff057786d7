package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// countingReceiver is an OTLP/HTTP receiver that only counts the spans it
// is sent: the cheapest possible backend, so that what the bench measures
// is the agent's exporting, not a collector's work.
type countingReceiver struct {
	srv   *http.Server
	addr  string
	spans atomic.Int64
}

func startReceiver() (*countingReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &countingReceiver{addr: ln.Addr().String()}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var n int64
		for _, rs := range msg.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				n += int64(len(ss.Spans))
			}
		}
		r.spans.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *countingReceiver) close() { _ = r.srv.Close() }

// exportScenario measures the trivial handler's throughput with 8 clients,
// untraced and traced with spans going over OTLP/HTTP to the counting
// receiver, in alternating rounds; every span sent while attached must
// reach the receiver.
type exportScenario struct {
	untraced, traced []float64 // req/s per round
	sent, got        int64
}

func runExport(url string, pid int) (*exportScenario, error) {
	rcv, err := startReceiver()
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	sc := &exportScenario{}
	for range *rounds {
		sc.untraced = append(sc.untraced, throughput(url, *clients, *duration).rps)
		agent, agentErr, err := startAgentArgs([]int{pid}, nil, "--output", "none", "--otlp-endpoint", "http://"+rcv.addr)
		if err != nil {
			return nil, err
		}
		p := throughput(url, *clients, *duration)
		sc.traced = append(sc.traced, p.rps)
		sc.sent += int64(p.requests)
		if err := stopAgent(agent, agentErr); err != nil {
			return nil, err
		}
	}
	sc.got = rcv.spans.Load()
	return sc, nil
}

func (sc *exportScenario) print() {
	fmt.Println("one traced service exporting over OTLP/HTTP to a local receiver that only counts (GET /bench)")
	for i := range sc.untraced {
		fmt.Printf("  round %d: untraced %.0f req/s, traced %.0f req/s\n", i+1, sc.untraced[i], sc.traced[i])
	}
	u, t := medianOf(sc.untraced), medianOf(sc.traced)
	fmt.Printf("throughput kept with %d concurrent clients: %.1f%% of untraced\n", *clients, 100*t/u)
	fmt.Printf("spans delivered: %d of %d\n", sc.got, sc.sent)
}

func (sc *exportScenario) err() error {
	if sc.got != sc.sent {
		return fmt.Errorf("OTLP export: %d spans sent while attached but %d reached the receiver", sc.sent, sc.got)
	}
	return nil
}

// throughput runs n clients for d and counts what they completed.
func throughput(url string, n int, d time.Duration) phase {
	var done, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	began := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			for ctx.Err() == nil {
				if err := get(c, url); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d requests failed\n", failed.Load())
		os.Exit(1)
	}
	return phase{rps: float64(done.Load()) / time.Since(began).Seconds(), requests: int(done.Load())}
}

// paced sends requests at rate per second from n clients for d, each
// client keeping its own schedule, and says how many were made.
func paced(url string, rate float64, n int, d time.Duration) int64 {
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(n) * float64(time.Second) / rate)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			next := start.Add(time.Duration(i) * interval / time.Duration(n))
			for time.Since(start) < d {
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait)
				}
				next = next.Add(interval)
				if err := get(c, url); err == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return done.Load()
}

// loadResult is the agent's own cost at a steady load: CPU per span and
// memory.
type loadResult struct {
	name      string
	spansPerS float64
	cpuPer    time.Duration
	rss, hwm  int64
}

// runLoad measures the agent's CPU per span and its memory while the
// trivial handler serves loadRate requests a second, with the spans going
// where args say.
func runLoad(name, url string, pid int, args ...string) (loadResult, error) {
	agent, agentErr, err := startAgentArgs([]int{pid}, nil, args...)
	if err != nil {
		return loadResult{}, err
	}
	paced(url, *loadRate, *clients, time.Second) // reach the steady state
	cpu0 := processCPU(agent.Process.Pid)
	t0 := time.Now()
	n := paced(url, *loadRate, *clients, *duration)
	elapsed := time.Since(t0)
	cpu := processCPU(agent.Process.Pid) - cpu0
	rss, hwm := memoryOf(agent.Process.Pid)
	if err := stopAgent(agent, agentErr); err != nil {
		return loadResult{}, err
	}
	r := loadResult{name: name, spansPerS: float64(n) / elapsed.Seconds(), rss: rss, hwm: hwm}
	if n > 0 {
		r.cpuPer = cpu / time.Duration(n)
	}
	return r, nil
}

func printLoad(results []loadResult) {
	fmt.Printf("the agent's own cost at a steady %.0f requests/s of the trivial handler (one span each):\n", *loadRate)
	for _, r := range results {
		fmt.Printf("  %-34s %7.0f spans/s  agent CPU %5.2f µs per span  RSS %3d MB (peak %d MB)\n",
			r.name, r.spansPerS, float64(r.cpuPer)/1e3, r.rss>>20, r.hwm>>20)
	}
}

// memoryOf reads a process's resident set size and its peak.
func memoryOf(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// startJaeger runs the Jaeger that scripts/setup.sh builds, with the
// tests' configuration (OTLP/HTTP on 127.0.0.1:4318), until stop is
// called.
func startJaeger() (stop func(), endpoint string, err error) {
	bin := filepath.Join(".cache", "bin", "jaeger")
	if _, err := os.Stat(bin); err != nil {
		return nil, "", fmt.Errorf("%s: %w (scripts/setup.sh builds it)", bin, err)
	}
	cmd := exec.Command(bin, "--config", "file:tests/tools/jaeger-config.yaml")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.Dir = "."
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:4318")
		if err == nil {
			c.Close()
			return stop, "http://127.0.0.1:4318", nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", fmt.Errorf("jaeger did not listen on 127.0.0.1:4318")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
