package testenv

import (
	"path/filepath"
	"testing"
	"time"
)

// PrebuiltDBAppName is the file name of the prebuilt database sample app in
// the PrebuiltEnv directory.
const PrebuiltDBAppName = "dbapp"

// BuildDBApp builds tests/dbapp, the database/sql sample service, with the
// Go toolchain that runs the tests and returns the binary's path. It builds
// once per test process. With PrebuiltEnv set it returns the prebuilt
// PrebuiltDBAppName instead, failing the test when it is missing.
//
// tests/dbapp is a module of its own, with its go.mod and go.sum, so that the
// SQL drivers it uses stay out of the repository's module; it is built in
// place, which needs its dependencies in the module cache or the module
// proxy. A cold build takes about a minute (modernc.org/sqlite is a large
// package), a warm one well under a second.
func BuildDBApp(t testing.TB) string {
	t.Helper()
	if pre, ok := prebuiltDir(); ok {
		return prebuiltBinary(t, pre, PrebuiltDBAppName, "")
	}
	return BuildDBAppWith(t, "", "")
}

// BuildDBAppWith builds tests/dbapp with another Go toolchain (a GOTOOLCHAIN
// value; "" for the one running the tests) and/or linker flags, once per
// combination and test process, as BuildSampleAppWith does for the sample
// app. It is for tests that read binaries, not for the kernel matrix: it
// has no prebuilt form.
func BuildDBAppWith(t testing.TB, goToolchain, ldflags string) string {
	t.Helper()
	dir := processBinDir(t)
	root := RepoRoot(t)
	name := "dbapp"
	if goToolchain != "" || ldflags != "" {
		name = "db" + sampleAppName(goToolchain, ldflags)
	}
	path, err := memoBuild(name, func() (string, error) {
		start := time.Now()
		out := filepath.Join(dir, name)
		src := filepath.Join(root, "tests", "dbapp")
		args := []string{"build", "-o", out}
		if ldflags != "" {
			args = append(args, "-ldflags="+ldflags)
		}
		if err := goBuild(src, goEnv(goToolchain), append(args, ".")); err != nil {
			return "", err
		}
		t.Logf("built %s (GOTOOLCHAIN=%q, -ldflags=%q) in %v", out, goToolchain, ldflags, time.Since(start).Round(time.Millisecond))
		return out, nil
	})
	if err != nil {
		t.Fatalf("building the database sample app (GOTOOLCHAIN=%q, -ldflags=%q): %v", goToolchain, ldflags, err)
	}
	return path
}
