package testenv

import (
	"path/filepath"
	"testing"
)

// BuildPhaseApp builds tests/testdata/phaseapp, the fixture of the phase
// tests (generic, recursive, panicking and stack-growing phases, and a loop
// that prices a traced call), once per test process and build mode (""
// for the default, "pie" for a position-independent executable).
func BuildPhaseApp(t testing.TB, buildMode string) string {
	t.Helper()
	dir := processBinDir(t)
	root := RepoRoot(t)
	name := "phaseapp"
	args := []string{"build"}
	if buildMode != "" {
		name += "-" + buildMode
		args = append(args, "-buildmode="+buildMode)
	}
	path, err := memoBuild(name, func() (string, error) {
		out := filepath.Join(dir, name)
		return out, goBuild(root, goEnv(""), append(args, "-o", out, "./tests/testdata/phaseapp"))
	})
	if err != nil {
		t.Fatalf("building the phase fixture: %v", err)
	}
	return path
}
