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
	dir := processBinDir(t)
	root := RepoRoot(t)
	path, err := memoBuild("dbapp", func() (string, error) {
		start := time.Now()
		out := filepath.Join(dir, "dbapp")
		src := filepath.Join(root, "tests", "dbapp")
		if err := goBuild(src, goEnv(""), []string{"build", "-o", out, "."}); err != nil {
			return "", err
		}
		t.Logf("built %s in %v", out, time.Since(start).Round(time.Millisecond))
		return out, nil
	})
	if err != nil {
		t.Fatalf("building the database sample app: %v", err)
	}
	return path
}
