// Package gobintest builds Go test programs for the tests of the packages
// that read executables (probes/gobin, probes/offsets). Those tests need real
// binaries, built normally and stripped, by the same toolchain that runs the
// test so that unsafe.Offsetof in the test is a valid cross-check.
package gobintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RetFinder is the import path of the fixture program, relative to the
// module root: it has a function with several returns (main.classify) and
// links the net/http server.
const RetFinder = "./tests/testdata/retfinder"

// Fixtures builds programs at most once per test binary, because the builds
// dominate the tests' run time. Create it in TestMain and Close it there.
type Fixtures struct {
	dir   string
	mu    sync.Mutex
	built map[string]string
}

// NewFixtures creates the directory the binaries are written to.
func NewFixtures() (*Fixtures, error) {
	dir, err := os.MkdirTemp("", "gobintest-")
	if err != nil {
		return nil, err
	}
	return &Fixtures{dir: dir, built: make(map[string]string)}, nil
}

// Close removes every binary built.
func (f *Fixtures) Close() error {
	return os.RemoveAll(f.dir)
}

// Build runs `go build` of pkg (relative to the module root) for
// linux/amd64 with the local toolchain, with extra environment variables
// (e.g. "CGO_ENABLED=0") and build flags (e.g. "-ldflags=-s -w"), and returns
// the binary's path. name identifies the variant and must be unique for each
// combination of pkg, env and flags.
func (f *Fixtures) Build(t testing.TB, name, pkg string, env []string, flags ...string) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if out, ok := f.built[name]; ok {
		return out
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, name)
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	// GOTOOLCHAIN=local: the fixture must be built by the toolchain that
	// compiled the test, or layouts compared with unsafe.Offsetof could
	// legitimately differ.
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOOS=linux", "GOARCH=amd64")
	cmd.Env = append(cmd.Env, env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	f.built[name] = out
	return out
}

// ModuleRoot returns the directory holding go.mod above the working
// directory, so fixture paths do not depend on which package's test runs.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
