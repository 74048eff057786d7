package testenv

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries are built into a directory owned by this test process,
// $REPO/.cache/testbin/<pid>. A directory shared between test processes would
// let one "go test" package overwrite a binary that a test in another package
// has just started and attached uprobes to; a per-test t.TempDir would rebuild
// for every test. Directories of processes that no longer exist are removed
// when a new one is created, since the testing package offers no hook at
// process exit without a TestMain.
var (
	binDirOnce sync.Once
	binDir     string
	binDirErr  error
)

func processBinDir(t testing.TB) string {
	t.Helper()
	binDirOnce.Do(func() {
		root, err := findRepoRoot()
		if err != nil {
			binDirErr = err
			return
		}
		parent := filepath.Join(root, ".cache", "testbin")
		pruneDeadBinDirs(parent)
		binDir = filepath.Join(parent, strconv.Itoa(os.Getpid()))
		// A leftover directory of an earlier process with the same pid holds
		// stale binaries: start empty.
		if err := os.RemoveAll(binDir); err != nil {
			binDirErr = err
			return
		}
		binDirErr = os.MkdirAll(binDir, 0o755)
	})
	if binDirErr != nil {
		t.Fatalf("creating the test binary directory: %v", binDirErr)
	}
	return binDir
}

// pruneDeadBinDirs removes the per-process directories under parent whose
// process has exited. Errors are ignored: this is housekeeping only.
func pruneDeadBinDirs(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() || pid == os.Getpid() {
			continue
		}
		// Signal 0 checks for existence only; EPERM means the process exists
		// but belongs to someone else.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

// build memoises one "go build" per process: the first caller builds, later
// callers get the same path or the same error.
type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

func memoBuild(key string, fn func() (string, error)) (string, error) {
	buildsMu.Lock()
	b, ok := builds[key]
	if !ok {
		b = &build{}
		builds[key] = b
	}
	buildsMu.Unlock()
	// fn must not call t.Fatal: a Goexit inside Do would mark the build done
	// with neither a path nor an error.
	b.once.Do(func() { b.path, b.err = fn() })
	return b.path, b.err
}

// BuildSampleApp builds tests/sampleapp with the Go toolchain that runs the
// tests and returns the binary's path. It builds once per test process. With
// PrebuiltEnv set it returns the prebuilt binary instead.
func BuildSampleApp(t testing.TB) string {
	t.Helper()
	return BuildSampleAppWith(t, "", "")
}

// BuildSampleAppWith builds tests/sampleapp with another Go toolchain and/or
// linker flags and returns the binary's path, building each combination once
// per test process. goToolchain is a GOTOOLCHAIN value such as "go1.27.3"
// (fetched through the module proxy on first use; "" means the toolchain
// running the tests); ldflags is passed as -ldflags, e.g. "-s -w" for a
// binary without symbol table and DWARF. With PrebuiltEnv set it returns
// the prebuilt binary named by PrebuiltSampleAppName instead.
//
// The sample application is built as a standalone module whose go line is
// the chosen toolchain's own version. That lets toolchains older than the
// repository's go.mod build it, and gives it the language version and
// GODEBUG defaults a fresh application built with that toolchain would have.
func BuildSampleAppWith(t testing.TB, goToolchain, ldflags string) string {
	t.Helper()
	if pre, ok := prebuiltDir(); ok {
		return prebuiltBinary(t, pre, PrebuiltSampleAppName(goToolchain, ldflags), goToolchain)
	}
	dir := processBinDir(t)
	root := RepoRoot(t)
	key := "sampleapp\x00" + goToolchain + "\x00" + ldflags
	path, err := memoBuild(key, func() (string, error) {
		start := time.Now()
		out := filepath.Join(dir, sampleAppName(goToolchain, ldflags))
		if err := buildSampleApp(root, dir, out, goToolchain, ldflags); err != nil {
			return "", err
		}
		t.Logf("built sample app %s (GOTOOLCHAIN=%q, -ldflags=%q) in %v", out, goToolchain, ldflags, time.Since(start).Round(time.Millisecond))
		return out, nil
	})
	if err != nil {
		t.Fatalf("building the sample app (GOTOOLCHAIN=%q, -ldflags=%q): %v", goToolchain, ldflags, err)
	}
	return path
}

// sampleAppName gives each toolchain/ldflags combination its own readable
// file name; the hash keeps names distinct when sanitising merges two sets
// of flags.
func sampleAppName(goToolchain, ldflags string) string {
	if goToolchain == "" && ldflags == "" {
		return "sampleapp"
	}
	h := fnv.New32a()
	h.Write([]byte(goToolchain + "\x00" + ldflags))
	tc := goToolchain
	if tc == "" {
		tc = "local"
	}
	return fmt.Sprintf("sampleapp-%s-%08x", sanitize(tc), h.Sum32())
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '_'
	}, s)
}

func buildSampleApp(root, dir, out, goToolchain, ldflags string) error {
	src, err := os.MkdirTemp(dir, "src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)

	// Copy the application's non-test sources; it has no dependencies, so
	// no go.sum is needed.
	appDir := filepath.Join(root, "tests", "sampleapp")
	files, err := filepath.Glob(filepath.Join(appDir, "*.go"))
	if err != nil {
		return err
	}
	copied := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, filepath.Base(f)), data, 0o644); err != nil {
			return err
		}
		copied++
	}
	if copied == 0 {
		return fmt.Errorf("no Go sources in %s", appDir)
	}

	env := goEnv(goToolchain)
	// Ask the chosen toolchain for its version first: that also downloads it
	// when needed, and its error is clearer than a failing build's.
	verCmd := exec.Command("go", "env", "GOVERSION")
	verCmd.Dir = src
	verCmd.Env = env
	verOut, err := verCmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go env GOVERSION (GOTOOLCHAIN=%q): %v\n%s", goToolchain, err, verOut)
	}
	version := goModVersion(strings.TrimSpace(string(verOut)))
	if version == "" {
		// A development toolchain ("devel go1.27-abcdef ...") has no release
		// version; fall back to the oldest one the application compiles with
		// (method and wildcard patterns in ServeMux).
		version = "1.22"
	}
	mod := fmt.Sprintf("module zerotrace.test/sampleapp\n\ngo %s\n", version)
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(mod), 0o644); err != nil {
		return err
	}

	args := []string{"build", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags="+ldflags)
	}
	args = append(args, ".")
	return goBuild(src, env, args)
}

// goModVersion turns a GOVERSION value ("go1.27.3", "go1.26rc1",
// "go1.27.3 X:nocoverageredesign") into a version for a go.mod go line.
func goModVersion(goversion string) string {
	fields := strings.Fields(goversion)
	if len(fields) == 0 {
		return ""
	}
	v, ok := strings.CutPrefix(fields[0], "go")
	if !ok || v == "" || v[0] < '0' || v[0] > '9' {
		return ""
	}
	return v
}

// BuildZerotrace builds ./cmd/zerotrace from the repository and returns the
// binary's path. It builds once per test process. With PrebuiltEnv set it
// returns the prebuilt "zerotrace" instead.
func BuildZerotrace(t testing.TB) string {
	t.Helper()
	if pre, ok := prebuiltDir(); ok {
		return prebuiltBinary(t, pre, "zerotrace", "")
	}
	dir := processBinDir(t)
	root := RepoRoot(t)
	path, err := memoBuild("zerotrace", func() (string, error) {
		start := time.Now()
		out := filepath.Join(dir, "zerotrace")
		if err := goBuild(root, goEnv(""), []string{"build", "-o", out, "./cmd/zerotrace"}); err != nil {
			return "", err
		}
		t.Logf("built %s in %v", out, time.Since(start).Round(time.Millisecond))
		return out, nil
	})
	if err != nil {
		t.Fatalf("building zerotrace: %v", err)
	}
	return path
}

// goEnv is the environment for the go command: the test's own, with a
// workspace file disabled (it could pull the separate tests/tools module in)
// and GOTOOLCHAIN set when a toolchain is requested.
func goEnv(goToolchain string) []string {
	env := append(os.Environ(), "GOWORK=off")
	if goToolchain != "" {
		env = append(env, "GOTOOLCHAIN="+goToolchain)
	}
	return env
}

func goBuild(dir string, env, args []string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}
