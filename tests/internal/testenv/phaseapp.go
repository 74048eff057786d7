package testenv

import (
	"path/filepath"
	"testing"
)

// BuildPhaseApp builds tests/testdata/phaseapp, the fixture of the phase
// tests (generic, recursive, panicking and stack-growing phases, and a loop
// that prices a traced call), once per test process.
func BuildPhaseApp(t testing.TB) string {
	t.Helper()
	dir := processBinDir(t)
	root := RepoRoot(t)
	path, err := memoBuild("phaseapp", func() (string, error) {
		out := filepath.Join(dir, "phaseapp")
		return out, goBuild(root, goEnv(""), []string{"build", "-o", out, "./tests/testdata/phaseapp"})
	})
	if err != nil {
		t.Fatalf("building the phase fixture: %v", err)
	}
	return path
}
