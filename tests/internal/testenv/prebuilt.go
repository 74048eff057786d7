package testenv

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// PrebuiltEnv names a directory of binaries built ahead of time. When it is
// set (and not empty), BuildZerotrace, BuildSampleApp, BuildSampleAppWith and
// BuildDBApp return the matching file from it instead of building, and fail
// the test when that file is missing: they never build and never skip in this
// mode. The kernel matrix sets it, since its guests have no Go toolchain and a
// test that quietly skipped there would prove nothing.
//
// File names inside the directory:
//
//	zerotrace                        BuildZerotrace
//	sampleapp-default                BuildSampleApp
//	sampleapp-<toolchain>            BuildSampleAppWith(t, toolchain, "")
//	sampleapp-<toolchain>-ldflags<f> BuildSampleAppWith(t, toolchain, ldflags)
//	dbapp                            BuildDBApp
//
// See PrebuiltSampleAppName for <toolchain> and <f>.
const PrebuiltEnv = "ZEROTRACE_PREBUILT"

// PrebuiltSampleAppName is the file name of a prebuilt sample app (see
// PrebuiltEnv). <toolchain> is the GOTOOLCHAIN value, or "default" for the
// toolchain that runs the tests; -ldflags<f> is appended when ldflags is not
// empty, f being ldflags without spaces and with characters other than
// letters, digits, '.' and '-' replaced by '_'. So "-s -w" gives
// "sampleapp-default-ldflags-s-w" and GOTOOLCHAIN=go1.27.3 without flags
// gives "sampleapp-go1.27.3". Unlike sampleAppName it carries no hash, so
// that a shell script can write the names down.
func PrebuiltSampleAppName(goToolchain, ldflags string) string {
	tc := goToolchain
	if tc == "" {
		tc = "default"
	}
	name := "sampleapp-" + sanitize(tc)
	if ldflags != "" {
		name += "-ldflags" + sanitize(strings.ReplaceAll(ldflags, " ", ""))
	}
	return name
}

// prebuiltDir returns the PrebuiltEnv directory, if the tests use one.
func prebuiltDir() (string, bool) {
	dir := os.Getenv(PrebuiltEnv)
	return dir, dir != ""
}

// exactToolchain matches GOTOOLCHAIN values that name one release, whose
// binaries must then report exactly that Go version ("go1.27.3" but not
// "local" or "go1.27.3+auto").
var exactToolchain = regexp.MustCompile(`^go1\.[0-9]+(\.[0-9]+|rc[0-9]+)?$`)

// prebuiltBinary returns dir/name, failing the test unless it is an
// executable file. When goToolchain names a release, the binary must have
// been built by it: a payload built with the wrong toolchain would make a
// "Go 1.27" test pass on Go 1.26 offsets.
func prebuiltBinary(t testing.TB, dir, name, goToolchain string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("%s=%s: %v", PrebuiltEnv, dir, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%s=%s is set, so binaries are not built, but the prebuilt %s is missing: %v", PrebuiltEnv, dir, name, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("prebuilt %s is not an executable file (mode %v)", path, fi.Mode())
	}
	if exactToolchain.MatchString(goToolchain) {
		info, err := buildinfo.ReadFile(path)
		if err != nil {
			t.Fatalf("prebuilt %s: reading its build info: %v", path, err)
		}
		if info.GoVersion != goToolchain {
			t.Fatalf("prebuilt %s was built by %s, want %s", path, info.GoVersion, goToolchain)
		}
	}
	t.Logf("using prebuilt %s", path)
	return path
}
