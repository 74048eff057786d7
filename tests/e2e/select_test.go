package e2e

import (
	"fmt"
	"io"
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
