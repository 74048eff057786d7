package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// host is a network namespace standing in for a machine, with its own
// cgroup, as a separate host's services would have.
type host struct {
	ns     string // name under /run/netns
	ip     string
	cgroup string // absolute path of its cgroup v2 directory
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cgroup2Root is where the cgroup v2 hierarchy is mounted.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if ok && strings.HasPrefix(post, "cgroup2 ") && len(fields) >= 5 && fields[3] == "/" {
			return fields[4]
		}
	}
	t.Fatal("no cgroup v2 hierarchy is mounted")
	return ""
}

// twoHosts makes two network namespaces joined by a veth pair, each with
// its own cgroup. Everything is removed at cleanup.
func twoHosts(t *testing.T) (a, b host) {
	t.Helper()
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	root := cgroup2Root(t)
	a = host{ns: "zt-e2e-a-" + tag, ip: "10.77.0.1", cgroup: filepath.Join(root, "zt-e2e-a-"+tag)}
	b = host{ns: "zt-e2e-b-" + tag, ip: "10.77.0.2", cgroup: filepath.Join(root, "zt-e2e-b-"+tag)}
	vethA, vethB := "zta"+tag, "ztb"+tag
	for _, h := range []host{a, b} {
		run(t, "ip", "netns", "add", h.ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.ns).Run() })
		if err := os.Mkdir(h.cgroup, 0o755); err != nil {
			t.Fatal(err)
		}
		// Registered before the services start, so it runs after they
		// have stopped and the cgroup is empty.
		t.Cleanup(func() { _ = os.Remove(h.cgroup) })
	}
	run(t, "ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB)
	run(t, "ip", "link", "set", vethA, "netns", a.ns)
	run(t, "ip", "link", "set", vethB, "netns", b.ns)
	for _, x := range []struct {
		h   host
		dev string
	}{{a, vethA}, {b, vethB}} {
		run(t, "ip", "-n", x.h.ns, "addr", "add", x.h.ip+"/24", "dev", x.dev)
		run(t, "ip", "-n", x.h.ns, "link", "set", x.dev, "up")
		run(t, "ip", "-n", x.h.ns, "link", "set", "lo", "up")
	}
	return a, b
}

// startOn starts the sample app on host h: in its cgroup from its first
// instruction (so that every socket it opens belongs there) and in its
// network namespace.
func startOn(t *testing.T, h host, app string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	script := `echo $$ > "$1/cgroup.procs" && shift && exec nsenter --net="$@"`
	full := append([]string{"-c", script, "sh", h.cgroup, "/run/netns/" + h.ns, app}, args...)
	return testenv.StartSampleApp(t, "/bin/sh", full...)
}

// dialIn returns a dialer whose sockets live in network namespace ns: the
// socket is created on an OS thread moved into ns and then moved back, so
// that the thread can serve other goroutines again instead of being thrown
// away.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer home.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("entering netns %s: %w", ns, err)
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if rerr := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// The thread stays locked and in ns: it must never run another
			// goroutine. The test fails on this error.
			if c != nil {
				c.Close()
			}
			return nil, fmt.Errorf("leaving netns %s: %w", ns, rerr)
		}
		runtime.UnlockOSThread()
		return c, err
	}
}

// TestTwoHostsJoinThroughInjectedHeader stands two hosts up as network
// namespaces joined by a veth pair, a service on each (gateway on one,
// backend on the other) in its own cgroup, and one agent per namespace
// attached only to its own service. The agents share nothing: the backend's
// server span can only join the gateway's trace through the traceparent
// header the gateway's agent adds to the outgoing request. Every request
// must arrive as one trace across both agents' outputs.
func TestTwoHostsJoinThroughInjectedHeader(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	ha, hb := twoHosts(t)
	backend, _ := startOn(t, hb, app, "-addr", hb.ip+":8080")
	gateway, gwAddr := startOn(t, ha, app, "-addr", ha.ip+":8080", "-downstream", "http://"+hb.ip+":8080")
	mode := injectMode()
	agentOn := func(h host, pid int) *agent {
		return startAgent(t, "nsenter", nil, "--net=/run/netns/"+h.ns, zt, "attach",
			"--pid", fmt.Sprint(pid), "--output", "json", "--inject", mode)
	}
	agentA := agentOn(ha, gateway.Process.Pid)
	agentB := agentOn(hb, backend.Process.Pid)

	const requests, workers = 40, 8
	c := &http.Client{
		Timeout:   testenv.Timeout(t, 20*time.Second),
		Transport: &http.Transport{DialContext: dialIn(ha.ns)},
	}
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := w; id < requests; id += workers {
				resp, err := c.Get(fmt.Sprintf("http://%s/chain?id=%d", gwAddr, id))
				if err != nil {
					errs <- err
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("[%d:leaf]", id); resp.StatusCode != 200 || string(body) != want {
					errs <- fmt.Errorf("request %d: status %d body %q, want %q", id, resp.StatusCode, body, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	agentA.stop()
	agentB.stop()

	spansA, spansB := fromJSON(agentA.jsonSpans()), fromJSON(agentB.jsonSpans())
	servers := map[string]observed{} // gateway server spans by span id
	clients := map[string]observed{} // gateway client spans by span id
	for _, s := range spansA {
		switch s.Kind {
		case "server":
			if s.ParentSpanID != "" {
				t.Errorf("gateway server span %s has parent %s; the test's requests carry no context", s.SpanID, s.ParentSpanID)
			}
			servers[s.SpanID] = s
		case "client":
			clients[s.SpanID] = s
		}
	}
	if len(servers) != requests || len(clients) != requests {
		t.Fatalf("gateway agent: %d server and %d client spans, want %d each", len(servers), len(clients), requests)
	}
	for _, cs := range clients {
		ss, ok := servers[cs.ParentSpanID]
		if !ok || ss.TraceID != cs.TraceID {
			t.Errorf("gateway client span %s is not the child of a gateway server span in its trace", cs.SpanID)
		}
	}
	joined := map[string]bool{}
	for _, s := range spansB {
		if s.Kind != "server" {
			continue
		}
		cs, ok := clients[s.ParentSpanID]
		switch {
		case !ok:
			t.Errorf("backend server span %s (trace %s, parent %q) does not continue a gateway client span", s.SpanID, s.TraceID, s.ParentSpanID)
		case cs.TraceID != s.TraceID:
			t.Errorf("backend server span %s is in trace %s, its parent client span in %s", s.SpanID, s.TraceID, cs.TraceID)
		case joined[cs.SpanID]:
			t.Errorf("two backend server spans continue client span %s", cs.SpanID)
		default:
			joined[cs.SpanID] = true
		}
	}
	if len(joined) != requests {
		t.Errorf("%d of %d requests joined across the two agents", len(joined), requests)
	}
	if got := finalInjectCounts(t, agentA.Stderr()); got != [5]int{requests, 0, 0, 0, 0} {
		t.Errorf("gateway agent counts injected, kept, skipped, failed, not seen = %v, want [%d 0 0 0 0]", got, requests)
	}
}
