package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestGoTLSCost measures what the net/http client probe's TLS sites add to
// a Go program's TLS traffic that is not a model call
// (tests/testdata/gotlsloop: 64-byte round trips over loopback, each two
// crypto/tls.(*Conn).Write calls, on their emulated entry, and two Read
// calls that return data, on the emulated CALL of the copy inside Read;
// every one a hash lookup that misses): untraced, then with the agent
// attached, in turn, three rounds, medians. It fails only when the probes
// break the loop or the HTTP/2 part is not attached; the figures are for
// the README (go test ./tests/e2e -run TestGoTLSCost -v).
func TestGoTLSCost(t *testing.T) {
	testenv.RequireRoot(t)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	bin := filepath.Join(t.TempDir(), "gotlsloop")
	build := exec.Command("go", "build", "-o", bin, "./tests/testdata/gotlsloop")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building gotlsloop: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("gotlsloop did not start: %q", out.Text())
	}
	run := func() time.Duration {
		fmt.Fprintf(stdin, "%d\n", n)
		if !out.Scan() {
			t.Fatal("gotlsloop stopped")
		}
		ns, err := strconv.Atoi(strings.TrimSpace(out.Text()))
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(ns) / time.Duration(n)
	}
	run() // warm up
	zt := testenv.BuildZerotrace(t)
	var untraced, traced []time.Duration
	for range 3 {
		untraced = append(untraced, run())
		a := startAgent(t, zt, nil, "attach", "--pid", strconv.Itoa(cmd.Process.Pid), "--output", "json", "--log-level", "debug")
		if !strings.Contains(a.Stderr(), "tls_conn_read_copy") {
			t.Fatalf("the TLS read copy site was not attached:\n%s", a.Stderr())
		}
		traced = append(traced, run())
		a.stop()
	}
	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	u, tr := med(untraced), med(traced)
	t.Logf("per 64-byte TLS round trip (2 Write + 2 Read): untraced %v, traced %v: median %v → %v (%.2f×), +%v per TLS call",
		untraced, traced, u, tr, float64(tr)/float64(u), (tr-u)/4)
}
