// Package testenv holds helpers shared by zerotrace's privileged end-to-end
// tests: root checks, locating the repository, building the sample
// application and the zerotrace binary once per test process, and running the
// sample application as a child process that is always cleaned up.
package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ModulePath is the module path of the repository root; RepoRoot looks for
// the go.mod that declares it.
const ModulePath = "github.com/zerotrace/zerotrace"

// RequireRootEnv is the environment variable that turns RequireRoot's skip
// into a failure. CI sets it to 1 so that privileged tests can never pass
// silently by skipping.
const RequireRootEnv = "ZEROTRACE_REQUIRE_ROOT"

// RequireRoot skips the test when the process is not running as root, since
// loading eBPF programs and attaching uprobes needs privileges. When
// ZEROTRACE_REQUIRE_ROOT=1 the test fails instead of skipping.
func RequireRoot(t testing.TB) {
	t.Helper()
	requireRoot(t, os.Geteuid())
}

// requireRoot is RequireRoot with the effective uid as a parameter, so that
// the non-root paths can be tested as root.
func requireRoot(t testing.TB, euid int) {
	t.Helper()
	if euid == 0 {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("this test needs root (eBPF, uprobes) but runs as uid %d, and %s=1 forbids skipping it", euid, RequireRootEnv)
	}
	t.Skipf("skipping: this test needs root (eBPF, uprobes) but runs as uid %d; run the tests as root (set %s=1 to make this a failure instead)", euid, RequireRootEnv)
}

// RepoRoot returns the absolute path of the repository root: the nearest
// directory at or above the working directory (the package directory under
// "go test") whose go.mod declares ModulePath. go.mod files of nested modules
// such as tests/tools are skipped.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatalf("locating the repository root: %v", err)
	}
	return root
}

func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isRepoRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod declaring module %s at or above %s", ModulePath, wd)
		}
	}
}

// isRepoRoot reports whether the go.mod file at path declares ModulePath.
func isRepoRoot(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == ModulePath
		}
	}
	return false
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller binds it; prefer letting the server
// pick (":0") and reporting its address where possible, as the sample
// application does.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closing probe listener: %v", err)
	}
	return port
}
