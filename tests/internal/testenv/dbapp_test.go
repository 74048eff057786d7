package testenv

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDBApp builds tests/dbapp and runs it against SQLite: every route
// answers, and a SIGTERM ends it cleanly. The PostgreSQL backends are
// exercised by the tests that start a server (tests/internal/postgres).
func TestDBApp(t *testing.T) {
	bin := BuildDBApp(t)
	if again := BuildDBApp(t); again != bin {
		t.Errorf("second BuildDBApp returned %s, want the cached %s", again, bin)
	}
	cmd, addr := StartSampleApp(t, bin, "-sqlite", filepath.Join(t.TempDir(), "db.sqlite"))
	base := "http://" + addr

	for _, tc := range []struct {
		method, path, body string
		wantStatus         int
		wantBody           string // substring
	}{
		{"POST", "/customers?db=sqlite&id=7", `{"name":"O'Hara","email":"o@example.com","phone":"555-0100","note":"x"}`, 201, `{"id":7}`},
		{"POST", "/customers?db=sqlite&id=7", `{"name":"again"}`, 500, "UNIQUE"},
		{"GET", "/customers/lookup?db=sqlite&id=7", "", 200, `"name":"O'Hara"`},
		{"GET", "/customers/lookup?db=sqlite&id=8", "", 404, ""},
		{"POST", "/orders?db=sqlite&id=7", `{"amount":250,"card":"4111 1111 1111 1111"}`, 201, `"amount":250`},
		{"GET", "/customers/parallel?db=sqlite&id=7", "", 200, `{"count":1,"orders":[7]}`},
		{"GET", "/orders/prepared?db=sqlite&id=7", "", 200, `"updated":1`},
		{"GET", "/orders/prepared?db=sqlite&id=7", "", 200, `"amount":251`},
		{"GET", "/fail?db=sqlite&id=7", "", 500, "missing_table"},
		{"GET", "/fail?db=pq&id=7", "", 400, "not an enabled backend"},
		{"GET", "/fail?db=sqlite&id=x", "", 400, ""},
		{"POST", "/orders?db=sqlite&id=9", "not json", 400, ""},
	} {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
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
	}
	StopSampleApp(t, cmd)
	if !cmd.ProcessState.Success() {
		t.Errorf("dbapp exit: %v", cmd.ProcessState)
	}
}

// TestPrebuiltDBApp: with ZEROTRACE_PREBUILT set, BuildDBApp returns the
// directory's dbapp, and fails rather than builds when it is missing.
func TestPrebuiltDBApp(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(PrebuiltEnv, dir)

	f := &fakeTB{TB: t}
	f.run(func(tb testing.TB) { BuildDBApp(tb) })
	if f.fatal == "" || f.skipped != "" || !strings.Contains(f.fatal, "dbapp") || !strings.Contains(f.fatal, "missing") {
		t.Errorf("BuildDBApp without a prebuilt dbapp: fatal=%q skipped=%q, want a failure naming the missing dbapp", f.fatal, f.skipped)
	}

	want := filepath.Join(dir, PrebuiltDBAppName)
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := BuildDBApp(t); got != want {
		t.Errorf("BuildDBApp = %s, want %s", got, want)
	}
}
