package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// results is a two-kernel matrix: 5.10 passed with the perf-event
// degradation, 6.1 had a rejected program and a failed test.
const results = `{
  "total_seconds": 612.3,
  "kernels": [
    {"name": "5.10", "ok": true, "kernel_release": "5.10.0-32-amd64", "wall_seconds": 300,
     "summary": {"perf_event_links": false,
       "verifier": {"ok": true, "rows": [
         {"instrumentation": "net/http server", "program": "serve_http_enter", "target": "sampleapp", "status": "loaded", "instructions": 86},
         {"instrumentation": "net/http server", "program": "serve_http_return", "target": "sampleapp", "status": "loaded", "instructions": 868}]},
       "bpftool_proof": {"ok": true, "programs": 2, "links": 0, "perf_events": 2, "gone_after_detach": true,
         "note": "no BPF link for uprobes before 5.15"},
       "tests": [{"name": "TestVerifierAcceptsEveryProgram", "ok": true}, {"name": "TestKill9", "ok": true}],
       "complete": true, "ok": true}},
    {"name": "6.1", "ok": false, "kernel_release": "6.1.0-50-amd64", "errors": ["payload exited with status 1"],
     "summary": {"perf_event_links": true,
       "verifier": {"ok": false, "rows": [
         {"instrumentation": "net/http server", "program": "serve_http_enter", "target": "sampleapp", "status": "loaded", "instructions": 90},
         {"instrumentation": "net/http server", "program": "serve_http_return", "target": "sampleapp", "status": "rejected", "reason": "R1 invalid mem access | processed 10 insns"}]},
       "bpftool_proof": {"ok": true, "programs": 2, "links": 2, "perf_events": 2, "gone_after_detach": true, "note": ""},
       "tests": [{"name": "TestVerifierAcceptsEveryProgram", "ok": false}, {"name": "TestKill9", "ok": false}],
       "complete": true, "ok": false}},
    {"name": "6.12", "ok": false, "errors": ["init never started"], "summary": null}
  ]
}`

func TestRender(t *testing.T) {
	dir := t.TempDir()
	resultsPath := filepath.Join(dir, "results.json")
	readmePath := filepath.Join(dir, "README.md")
	if err := os.WriteFile(resultsPath, []byte(results), 0o644); err != nil {
		t.Fatal(err)
	}
	const before, after = "# x\n\n## Kernels tested\n\n", "\n\n## Cost\n\ntext\n"
	doc := before + beginMarker + "\nold table\n" + endMarker + after
	if err := os.WriteFile(readmePath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(resultsPath, readmePath); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(readmePath)
	out := string(got)
	if !strings.HasPrefix(out, before+beginMarker+"\n") || !strings.HasSuffix(out, endMarker+after) {
		t.Errorf("text outside the markers changed:\n%s", out)
	}
	if strings.Contains(out, "old table") {
		t.Errorf("the old table is still there:\n%s", out)
	}
	for _, want := range []string{
		"| 5.10 | 5.10.0-32-amd64 | pass | 2/2 loaded | 1/1 passed | 2 programs, 2 uprobe perf events, no perf-event link while attached; all gone after detach | no BPF link for uprobes before 5.15 |",
		"| 6.1 | 6.1.0-50-amd64 | **FAIL** | 1/2 loaded, **1 rejected** | **0/1 passed** |",
		`serve_http_return for sampleapp rejected: R1 invalid mem access \| processed 10 insns`,
		"failed: TestVerifierAcceptsEveryProgram, TestKill9; payload exited with status 1",
		"| 6.12 | – | **FAIL** | – | – | – | init never started |",
		"| net/http server | `serve_http_enter` | sampleapp | loaded (86) | loaded (90) | – |",
		"| net/http server | `serve_http_return` | sampleapp | loaded (868) | **rejected** | – |",
		"End-to-end tests run on every kernel (JSON output, no Jaeger in the guests): `TestKill9`.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Timings must not appear: the table changes only with the results.
	if strings.Contains(out, "612") || strings.Contains(out, "300") {
		t.Errorf("output carries timings:\n%s", out)
	}

	// Deterministic: a second run changes nothing.
	if err := run(resultsPath, readmePath); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(readmePath)
	if string(again) != out {
		t.Errorf("second run changed the README:\n%s", again)
	}
}

func TestMissingMarkers(t *testing.T) {
	for _, doc := range []string{
		"no markers",
		endMarker + "\n" + beginMarker,
		beginMarker + " only",
	} {
		if _, err := replaceSection([]byte(doc), "x"); err == nil {
			t.Errorf("replaceSection(%q) succeeded", doc)
		}
	}
}
