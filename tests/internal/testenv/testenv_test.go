package testenv

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeTB stands in for a test so that failures, skips and cleanups of the
// helpers can be observed instead of failing the real test. Everything else
// (Logf, TempDir, Context, ...) goes to the real test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errors   []string
	fatal    string
	skipped  string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// run calls fn on its own goroutine, as the testing package runs a test, so
// that Fatalf and Skipf can end it with Goexit.
func (f *fakeTB) run(fn func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.run(func(testing.TB) { f.cleanups[i]() })
	}
	f.cleanups = nil
}

func TestRequireRoot(t *testing.T) {
	for _, tc := range []struct {
		euid                int
		env                 string
		wantSkip, wantFatal bool
	}{
		{euid: 0, env: ""},
		{euid: 0, env: "1"},
		{euid: 1000, env: "", wantSkip: true},
		{euid: 1000, env: "0", wantSkip: true},
		{euid: 1000, env: "1", wantFatal: true},
	} {
		t.Run(fmt.Sprintf("euid=%d,env=%q", tc.euid, tc.env), func(t *testing.T) {
			t.Setenv(RequireRootEnv, tc.env)
			f := &fakeTB{TB: t}
			f.run(func(tb testing.TB) { requireRoot(tb, tc.euid) })
			if (f.skipped != "") != tc.wantSkip || (f.fatal != "") != tc.wantFatal {
				t.Errorf("skipped=%q fatal=%q, want skip=%v fatal=%v", f.skipped, f.fatal, tc.wantSkip, tc.wantFatal)
			}
			if msg := f.skipped + f.fatal; msg != "" && !strings.Contains(msg, "root") {
				t.Errorf("message %q does not say root is needed", msg)
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	if !isRepoRoot(filepath.Join(root, "go.mod")) {
		t.Errorf("RepoRoot = %s, whose go.mod does not declare %s", root, ModulePath)
	}
	if _, err := os.Stat(filepath.Join(root, "tests", "sampleapp")); err != nil {
		t.Errorf("RepoRoot = %s: %v", root, err)
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("FreePort returned %d, which cannot be bound: %v", port, err)
	}
	ln.Close()
}

func TestGoModVersion(t *testing.T) {
	for in, want := range map[string]string{
		"go1.26.8":                      "1.26.8",
		"go1.27.3 X:nocoverageredesign": "1.27.3",
		"go1.27rc1":                     "1.27rc1",
		"devel go1.27-abcdef":           "",
		"":                              "",
	} {
		if got := goModVersion(in); got != want {
			t.Errorf("goModVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSampleApp builds the sample app, starts it and checks every route.
func TestSampleApp(t *testing.T) {
	bin := BuildSampleApp(t)
	if again := BuildSampleApp(t); again != bin {
		t.Errorf("second BuildSampleApp returned %s, want the cached %s", again, bin)
	}
	cmd, addr := StartSampleApp(t, bin)
	base := "http://" + addr

	for _, tc := range []struct {
		method, path, body string
		wantStatus         int
		wantBody           string // substring
	}{
		{"GET", "/hello", "", 200, "hello"},
		{"GET", "/users/42", "", 200, `{"id":"42","name":"user 42"}`},
		{"POST", "/items", strings.Repeat("x", 12345), 201, `{"length":12345}`},
		{"GET", "/fail", "", 500, ""},
		{"GET", "/slow?ms=50", "", 200, "slept 50 ms"},
		{"GET", "/slow?ms=-1", "", 400, ""},
		{"GET", "/bench", "", 200, "ok"},
		{"GET", "/nope", "", 404, ""},
		{"POST", "/hello", "", 405, ""},
	} {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
		}
		if tc.path == "/slow?ms=50" && time.Since(start) < 50*time.Millisecond {
			t.Errorf("/slow?ms=50 answered after %v", time.Since(start))
		}
	}
	StopSampleApp(t, cmd)
	if !cmd.ProcessState.Success() {
		t.Errorf("sample app exit: %v", cmd.ProcessState)
	}
}

// TestSampleAppCrashIsReported: a sample app that dies during the test (as
// one crashed by a bad probe would) fails the test at cleanup with its exit
// status.
func TestSampleAppCrashIsReported(t *testing.T) {
	bin := BuildSampleApp(t)
	f := &fakeTB{TB: t}
	var pid int
	f.run(func(tb testing.TB) {
		cmd, _ := StartSampleApp(tb, bin)
		pid = cmd.Process.Pid
		cmd.Process.Kill()
	})
	if f.fatal != "" {
		t.Fatalf("StartSampleApp failed: %s", f.fatal)
	}
	f.runCleanups()
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "exited unexpectedly") || !strings.Contains(f.errors[0], "killed") {
		t.Errorf("cleanup errors %q, want one about the unexpected exit", f.errors)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d still exists", pid)
	}
}

func TestStartSampleAppFailures(t *testing.T) {
	bin := BuildSampleApp(t)
	for _, tc := range []struct {
		name string
		bin  string
		args []string
		want []string
	}{
		{"bad address", bin, []string{"-addr", "127.0.0.1:99999"}, []string{"exited before listening", "exit status 1", "sampleapp:"}},
		{"wrong first line", "/bin/echo", []string{"hello"}, []string{`printed "hello"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTB{TB: t}
			f.run(func(tb testing.TB) { StartSampleApp(tb, tc.bin, tc.args...) })
			f.runCleanups()
			for _, w := range tc.want {
				if !strings.Contains(f.fatal, w) {
					t.Errorf("failure %q does not contain %q", f.fatal, w)
				}
			}
			if len(f.errors) != 0 {
				t.Errorf("cleanup reported again: %q", f.errors)
			}
		})
	}
}

func TestBuildSampleAppStripped(t *testing.T) {
	bin := BuildSampleAppWith(t, "", "-s -w")
	if bin == BuildSampleApp(t) {
		t.Fatalf("stripped and default builds share the path %s", bin)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{".symtab", ".debug_info"} {
		if f.Section(name) != nil {
			t.Errorf("%s has a %s section despite -s -w", bin, name)
		}
	}
}

func TestBuildSampleAppOtherToolchain(t *testing.T) {
	if testing.Short() {
		t.Skip("may download a Go toolchain")
	}
	const toolchain = "go1.27.3"
	bin := BuildSampleAppWith(t, toolchain, "")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if info.GoVersion != toolchain {
		t.Errorf("%s was built by %s, want %s", bin, info.GoVersion, toolchain)
	}
	_, addr := StartSampleApp(t, bin)
	resp, err := http.Get("http://" + addr + "/users/7")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /users/7: %s", resp.Status)
	}
}

func TestBuildZerotrace(t *testing.T) {
	srcs, _ := filepath.Glob(filepath.Join(RepoRoot(t), "cmd", "zerotrace", "*.go"))
	if len(srcs) == 0 {
		t.Skip("cmd/zerotrace does not exist yet")
	}
	bin := BuildZerotrace(t)
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("BuildZerotrace = %s: %v %v", bin, fi, err)
	}
	if again := BuildZerotrace(t); again != bin {
		t.Errorf("second BuildZerotrace returned %s, want the cached %s", again, bin)
	}
}

func TestPrebuiltSampleAppName(t *testing.T) {
	for _, tc := range []struct{ toolchain, ldflags, want string }{
		{"", "", "sampleapp-default"},
		{"", "-s -w", "sampleapp-default-ldflags-s-w"},
		{"go1.27.3", "", "sampleapp-go1.27.3"},
		{"go1.27.3", "-s -w", "sampleapp-go1.27.3-ldflags-s-w"},
		{"", "-X main.v=1", "sampleapp-default-ldflags-Xmain.v_1"},
	} {
		if got := PrebuiltSampleAppName(tc.toolchain, tc.ldflags); got != tc.want {
			t.Errorf("PrebuiltSampleAppName(%q, %q) = %q, want %q", tc.toolchain, tc.ldflags, got, tc.want)
		}
	}
}

// TestPrebuilt: with ZEROTRACE_PREBUILT set, the Build functions return the
// files from that directory, and a missing, non-executable or wrongly built
// file fails the test instead of being built or skipped.
func TestPrebuilt(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selfData, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	// This test binary stands in for every prebuilt file: it is a Go binary
	// built by the toolchain running the tests, so it is the wrong one for
	// an explicit other toolchain.
	for name, mode := range map[string]os.FileMode{
		"zerotrace":                     0o755,
		"sampleapp-default":             0o755,
		"sampleapp-default-ldflags-s-w": 0o644,
		"sampleapp-go1.27.3":            0o755,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), selfData, mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(PrebuiltEnv, dir)

	if got, want := BuildZerotrace(t), filepath.Join(dir, "zerotrace"); got != want {
		t.Errorf("BuildZerotrace = %s, want %s", got, want)
	}
	if got, want := BuildSampleApp(t), filepath.Join(dir, "sampleapp-default"); got != want {
		t.Errorf("BuildSampleApp = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		toolchain, ldflags string
		want               []string
	}{
		{"", "-s -w", []string{"sampleapp-default-ldflags-s-w", "not an executable"}},
		{"go1.27.3", "", []string{"sampleapp-go1.27.3", "built by", "want go1.27.3"}},
		{"go1.27.3", "-s -w", []string{PrebuiltEnv, "sampleapp-go1.27.3-ldflags-s-w", "missing"}},
	} {
		f := &fakeTB{TB: t}
		f.run(func(tb testing.TB) { BuildSampleAppWith(tb, tc.toolchain, tc.ldflags) })
		if f.fatal == "" || f.skipped != "" {
			t.Errorf("BuildSampleAppWith(%q, %q): fatal=%q skipped=%q, want a failure", tc.toolchain, tc.ldflags, f.fatal, f.skipped)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(f.fatal, w) {
				t.Errorf("BuildSampleAppWith(%q, %q) failure %q does not contain %q", tc.toolchain, tc.ldflags, f.fatal, w)
			}
		}
	}
}

func TestParseTimeoutScale(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"", 1, true},
		{"1", 1, true},
		{"10", 10, true},
		{"2.5", 2.5, true},
		{"0.5", 1, false},
		{"0", 1, false},
		{"-3", 1, false},
		{"ten", 1, false},
		{"NaN", 1, false},
		{"Inf", 1, false},
	} {
		if got, ok := parseTimeoutScale(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("parseTimeoutScale(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
