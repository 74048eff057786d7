package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestSelectByExeAndPort starts the agent with --exe and --port before any
// matching process exists, then starts a Go service whose executable
// matches the glob and a Python server listening on the port: both must be
// picked up and traced (uprobes for the one, the kernel for the other),
// and a process that matches neither must be left alone.
func TestSelectByExeAndPort(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	// A copy under a name no other test uses.
	name := fmt.Sprintf("zt-select-%d", os.Getpid())
	app := filepath.Join(t.TempDir(), name)
	data, err := os.ReadFile(testenv.BuildSampleApp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(app, data, 0o755); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)

	a := startAgent(t, zt, nil, "attach", "--exe", "zt-select-*", "--port", fmt.Sprint(port), "--output", "json")
	if !strings.Contains(a.Stderr(), "watching for processes that match --exe zt-select-*, --port "+fmt.Sprint(port)) {
		t.Fatalf("the agent does not say what it watches for:\n%s", a.Stderr())
	}
	if strings.Contains(a.Stderr(), "attached to") {
		t.Fatalf("attached before any process matched:\n%s", a.Stderr())
	}
	other, otherAddr := testenv.StartSampleApp(t, testenv.BuildSampleApp(t)) // matches neither
	goApp, goAddr := testenv.StartSampleApp(t, app)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "server.py")
	py, pyAddr := testenv.StartSampleApp(t, python, script, fmt.Sprint(port))

	deadline := time.Now().Add(testenv.Timeout(t, 15*time.Second))
	for strings.Count(a.Stderr(), "attached to") < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stderr := a.Stderr()
	for _, pid := range []int{goApp.Process.Pid, py.Process.Pid} {
		if !strings.Contains(stderr, fmt.Sprintf("attached to pid %d ", pid)) {
			t.Fatalf("pid %d was not picked up:\n%s", pid, stderr)
		}
	}
	if strings.Contains(stderr, fmt.Sprintf("pid %d ", other.Process.Pid)) {
		t.Fatalf("pid %d matches nothing but was attached:\n%s", other.Process.Pid, stderr)
	}

	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	for _, u := range []string{"http://" + goAddr + "/hello", "http://" + pyAddr + "/hello", "http://" + otherAddr + "/hello"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	a.stop()
	byPID := map[string]int{}
	for _, s := range fromJSON(a.jsonSpans()) {
		byPID[s.Resource["process.pid"]]++
	}
	want := map[string]int{fmt.Sprint(goApp.Process.Pid): 1, fmt.Sprint(py.Process.Pid): 1}
	if fmt.Sprint(byPID) != fmt.Sprint(want) {
		t.Errorf("spans by pid %v, want %v", byPID, want)
	}
}

// TestPreforkWorkersOwnTheirConnections traces a pre-forking Python server
// (three workers accepting on one listening socket, as gunicorn's do),
// selected by --port. Each connection must be attributed to the worker that
// accepted and served it, in the connection table and in the span, and
// never to another process that holds the same listening socket.
func TestPreforkWorkersOwnTheirConnections(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "prefork.py")
	parent, addr := testenv.StartSampleApp(t, python, script)
	workers := children(parent.Process.Pid)
	if len(workers) != 3 {
		t.Fatalf("workers %v, want 3", workers)
	}
	_, port, _ := strings.Cut(addr, ":")
	a := startAgent(t, zt, nil, "attach", "--port", port, "--output", "json", "--listen", "127.0.0.1:0")
	deadline := time.Now().Add(testenv.Timeout(t, 15*time.Second))
	for strings.Count(a.Stderr(), "attached to") < 4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range append(workers, fmt.Sprint(parent.Process.Pid)) {
		if !strings.Contains(a.Stderr(), "attached to pid "+pid+" ") {
			t.Fatalf("pid %s holds the listening socket but was not attached:\n%s", pid, a.Stderr())
		}
	}

	// One connection per request: which worker served which client port.
	const requests = 24
	servedBy := map[string]string{} // client port → worker pid
	seen := map[string]bool{}
	for range requests {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, clientPort, _ := strings.Cut(c.LocalAddr().String(), ":")
		fmt.Fprintf(c, "GET /who HTTP/1.0\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		servedBy[clientPort] = string(body)
		seen[string(body)] = true
	}
	if len(seen) < 2 {
		t.Logf("only workers %v served: the check below is weaker", seen)
	}
	m := mapAddr.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("the agent did not say where its endpoint is:\n%s", a.Stderr())
	}
	var conns []apiConn
	owner := map[string]string{}
	deadline = time.Now().Add(testenv.Timeout(t, 10*time.Second))
	for len(owner) < requests && time.Now().Before(deadline) {
		conns = connections(t, "http://"+m[1])
		for _, c := range conns {
			if c.Role == "server" && c.Local == addr && c.Closed != nil {
				_, p, _ := strings.Cut(c.Remote, ":")
				owner[p] = fmt.Sprint(c.PID)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.stop()
	for p, pid := range servedBy {
		if owner[p] != pid {
			t.Errorf("connection from port %s: served by pid %s, the table says pid %q", p, pid, owner[p])
		}
	}
	spans := fromJSON(a.jsonSpans())
	if len(spans) != requests {
		t.Errorf("%d spans, want %d", len(spans), requests)
	}
	for _, s := range spans {
		if want := servedBy[s.Attrs["network.peer.port"]]; s.Resource["process.pid"] != want || s.Attrs["url.path"] != "/who" {
			t.Errorf("span for client port %s from pid %s (path %s), served by pid %s",
				s.Attrs["network.peer.port"], s.Resource["process.pid"], s.Attrs["url.path"], want)
		}
	}
}
