package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export/servicemap"
	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// chromium is Debian's browser (scripts/setup.sh installs it).
const chromium = "/usr/bin/chromium"

var mapAddr = regexp.MustCompile(`service map on http://([^/]+)/`)

// exeName is the executable name a process's service defaults to.
func exeName(t *testing.T, pid int) string {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(exe)
}

// TestServiceMap runs a Go gateway that calls a Python http.server backend
// (traced from the kernel) and a Go service that queries SQLite, traced by
// one agent exporting to Jaeger. The agent's map must have exactly the
// expected nodes and edges, with request counts equal to the traffic sent,
// in its JSON API, in `zerotrace map` (every format) and in the web page as
// headless Chromium renders it (a screenshot goes to .cache/servicemap.png);
// its /metrics must count the same, with exemplars naming traces Jaeger has.
func TestServiceMap(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	dbappBin := testenv.BuildDBApp(t)
	j := jaeger.Start(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "server.py")
	py, pyAddr := testenv.StartSampleApp(t, python, script)
	db, dbAddr := testenv.StartSampleApp(t, dbappBin, "-sqlite", filepath.Join(t.TempDir(), "map.db"))
	gw, gwAddr := testenv.StartSampleApp(t, app, "-downstream", "http://"+pyAddr, "-downstream2", "http://"+dbAddr)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(gw.Process.Pid), "--pid", fmt.Sprint(py.Process.Pid),
		"--pid", fmt.Sprint(db.Process.Pid), "--output", "none", "--otlp-endpoint", j.OTLPEndpoint(), "--listen", "127.0.0.1:0")
	m := mapAddr.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("the agent did not say where its map is:\n%s", a.Stderr())
	}
	base := "http://" + m[1]

	const requests, workers = 30, 5
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
			for id := w; id < requests; id += workers {
				resp, err := c.Get(fmt.Sprintf("http://%s/chain?id=%d", gwAddr, id))
				if err != nil {
					errs <- err
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("[%d:python,%d:db]", id, id); string(body) != want {
					errs <- fmt.Errorf("request %d: %q, want %q", id, body, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	gwName, pyName, dbName := exeName(t, gw.Process.Pid), exeName(t, py.Process.Pid), exeName(t, db.Process.Pid)
	wantNodes := map[string]string{
		"service:" + gwName: servicemap.KindService, "service:" + pyName: servicemap.KindService,
		"service:" + dbName: servicemap.KindService, "db:sqlite": servicemap.KindDatabase,
	}
	wantEdges := map[[2]string]int64{
		{"service:" + gwName, "service:" + pyName}: requests,
		{"service:" + gwName, "service:" + dbName}: requests,
		{"service:" + dbName, "db:sqlite"}:         requests,
	}
	check := func(source string, got servicemap.Map) []string {
		var problems []string
		nodes := map[string]string{}
		for _, n := range got.Nodes {
			nodes[n.ID] = n.Kind
		}
		if fmt.Sprint(nodes) != fmt.Sprint(wantNodes) {
			problems = append(problems, fmt.Sprintf("%s: nodes %v, want %v", source, nodes, wantNodes))
		}
		edges := map[[2]string]int64{}
		for _, e := range got.Edges {
			edges[[2]string{e.Source, e.Target}] = e.Total.Requests
			if e.Total.Errors != 0 {
				problems = append(problems, fmt.Sprintf("%s: edge %s → %s has %d errors", source, e.Source, e.Target, e.Total.Errors))
			}
			if e.Total.Requests > 0 && (e.Total.P50Ms <= 0 || e.Total.P99Ms < e.Total.P50Ms || len(e.RecentTraces) == 0) {
				problems = append(problems, fmt.Sprintf("%s: edge %s → %s: percentiles %v/%v, %d recent traces", source, e.Source, e.Target, e.Total.P50Ms, e.Total.P99Ms, len(e.RecentTraces)))
			}
		}
		if fmt.Sprint(edges) != fmt.Sprint(wantEdges) {
			problems = append(problems, fmt.Sprintf("%s: edges %v, want %v", source, edges, wantEdges))
		}
		return problems
	}

	// The spans reach the map within a batch or two: wait for it.
	var problems []string
	deadline := time.Now().Add(testenv.Timeout(t, 20*time.Second))
	for {
		got, err := getMap(base)
		if err != nil {
			t.Fatal(err)
		}
		if problems = check("/api/map", got); len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}

	// zerotrace map, every format.
	for _, format := range servicemap.Formats {
		out, err := exec.Command(zt, "map", "--agent", base, "--format", format).CombinedOutput()
		if err != nil {
			t.Fatalf("zerotrace map --format %s: %v\n%s", format, err, out)
		}
		text := string(out)
		switch format {
		case "json":
			var got servicemap.Map
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("zerotrace map --format json: %v\n%s", err, out)
			}
			for _, p := range check("zerotrace map", got) {
				t.Error(p)
			}
		case "dot":
			if !strings.HasPrefix(text, "digraph") || strings.Count(text, " -> ") != len(wantEdges) {
				t.Errorf("DOT output:\n%s", text)
			}
		case "mermaid":
			if !strings.HasPrefix(text, "graph LR") || strings.Count(text, " -->") != len(wantEdges) {
				t.Errorf("Mermaid output:\n%s", text)
			}
		case "table":
			if !strings.Contains(text, "REQUESTS") || !strings.Contains(text, pyName) || !strings.Contains(text, "sqlite (database)") {
				t.Errorf("table output:\n%s", text)
			}
		}
	}

	checkMetrics(t, base, j, map[[2]string]int{{gwName, pyName}: requests, {gwName, dbName}: requests, {dbName, "sqlite"}: requests},
		map[string]int{gwName: requests, pyName: requests, dbName: requests})
	checkPage(t, base, wantEdges)
	a.stop()
}

func getMap(base string) (servicemap.Map, error) {
	var m servicemap.Map
	resp, err := http.Get(base + "/api/map")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

var (
	metricLine = regexp.MustCompile(`^([a-z_]+)(?:\{([^}]*)\})? (\S+)(?: # \{trace_id="([0-9a-f]{32})"\} \S+ \S+)?$`)
	labelPair  = regexp.MustCompile(`([a-z_]+)="((?:[^"\\]|\\.)*)"`)
)

// checkMetrics scrapes /metrics and checks the service graph counters and
// the RED histogram counts against the traffic, and that exemplars name
// traces Jaeger has.
func checkMetrics(t *testing.T, base string, j *jaeger.Jaeger, edges map[[2]string]int, served map[string]int) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	gotEdges := map[[2]string]int{}
	gotServed := map[string]int{}
	lost := map[string]int{}
	exemplars := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	eof := false
	for sc.Scan() {
		line := sc.Text()
		if line == "# EOF" {
			eof = true
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("unparseable /metrics line %q", line)
			continue
		}
		l := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			l[p[1]] = p[2]
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Errorf("value in %q: %v", line, err)
		}
		switch m[1] {
		case "traces_service_graph_request_total":
			gotEdges[[2]string{l["client"], l["server"]}] += int(v)
		case "http_server_request_duration_seconds_count":
			gotServed[l["service_name"]] += int(v)
		case "zerotrace_lost_total":
			lost[l["reason"]] = int(v)
		}
		if m[4] != "" {
			exemplars[m[4]] = true
		}
	}
	if !eof {
		t.Error("/metrics does not end with # EOF")
	}
	if fmt.Sprint(gotEdges) != fmt.Sprint(edges) {
		t.Errorf("traces_service_graph_request_total %v, want %v", gotEdges, edges)
	}
	if fmt.Sprint(gotServed) != fmt.Sprint(served) {
		t.Errorf("http_server_request_duration_seconds_count by service %v, want %v", gotServed, served)
	}
	// The agent's own loss counters are served, zeros included, and this
	// light traffic loses nothing.
	for _, reason := range []string{"kernel_ringbuf_full", "kernel_streams_full", "connection_bytes_failed", "otlp_queue_full", "otlp_export_failed"} {
		if _, ok := lost[reason]; !ok {
			t.Errorf("/metrics has no zerotrace_lost_total{reason=%q}; it has %v", reason, lost)
		}
	}
	for reason, n := range lost {
		if n != 0 {
			t.Errorf("zerotrace_lost_total{reason=%q} = %d, want 0", reason, n)
		}
	}
	if len(exemplars) == 0 {
		t.Fatal("no exemplar in /metrics")
	}
	checked := 0
	for id := range exemplars {
		if checked == 5 {
			break
		}
		checked++
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(t, 30*time.Second))
		found := false
		for ctx.Err() == nil && !found {
			r, err := http.Get(j.QueryURL() + "/api/traces/" + id)
			if err == nil {
				found = r.StatusCode == http.StatusOK
				r.Body.Close()
			}
			if !found {
				time.Sleep(300 * time.Millisecond)
			}
		}
		cancel()
		if !found {
			t.Errorf("exemplar trace %s is not in Jaeger", id)
		}
	}
}

var edgeRow = regexp.MustCompile(`<tr class="edge" data-source="([^"]+)" data-target="([^"]+)" data-requests="(\d+)"`)

// checkPage loads the map page in headless Chromium and checks the edges it
// rendered, then takes a screenshot.
func checkPage(t *testing.T, base string, want map[[2]string]int64) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing: run scripts/setup.sh", chromium)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=10000"}
	out, err := exec.Command(chromium, append(args, "--dump-dom", base+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	got := map[[2]string]int64{}
	for _, m := range edgeRow.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseInt(m[3], 10, 64)
		got[[2]string{m[1], m[2]}] = n
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the page shows edges %v, want %v", got, want)
	}
	if !strings.Contains(string(out), `<canvas`) {
		t.Errorf("the page drew no graph (no canvas)")
	}
	shot := filepath.Join(testenv.RepoRoot(t), ".cache", "servicemap.png")
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(chromium, append(args, "--window-size=1280,720", "--screenshot="+shot, base+"/")...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10000 {
		t.Errorf("screenshot %s missing or too small (%v)", shot, err)
	} else {
		t.Logf("screenshot: %s", shot)
	}
}
