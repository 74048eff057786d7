package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export/servicemap"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestServiceIdentity runs two services from one executable, a front that
// calls a backend, each started with its own OTEL_SERVICE_NAME; the
// backend also sets OTEL_RESOURCE_ATTRIBUTES. A services: rule of the
// agent's configuration names the front by PID, over its environment. The
// map must show two nodes (not one with a self-loop) with the edge between
// them and where each name came from; the spans must carry each name, the
// backend's own resource attributes, and a service.instance.id per
// process; the attach lines must say where each name came from.
func TestServiceIdentity(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	nonce := time.Now().UnixNano()
	backendName, frontEnv, frontName := fmt.Sprintf("e2e-id-backend-%d", nonce), fmt.Sprintf("e2e-id-gateway-%d", nonce), fmt.Sprintf("e2e-id-front-%d", nonce)

	bcmd := exec.Command(app)
	bcmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME="+backendName,
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=test,team=search%2Cranking,service.name=not-this,process.pid=1")
	backend, backendAddr := testenv.StartSampleAppCmd(t, bcmd)
	fcmd := exec.Command(app, "-downstream", "http://"+backendAddr)
	fcmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME="+frontEnv)
	front, frontAddr := testenv.StartSampleAppCmd(t, fcmd)

	config := filepath.Join(t.TempDir(), "zerotrace.yaml")
	rules := fmt.Sprintf("services:\n  - name: %s\n    pid: %d\n    attributes: {team: edge}\n", frontName, front.Process.Pid)
	if err := os.WriteFile(config, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(front.Process.Pid), "--pid", fmt.Sprint(backend.Process.Pid),
		"--output", "json", "--listen", "127.0.0.1:0", "--config", config, "--service-name", "never-used")
	for _, want := range []string{fmt.Sprintf("service %q (from config)", frontName), fmt.Sprintf("service %q (from env)", backendName)} {
		if !strings.Contains(a.Stderr(), want) {
			t.Errorf("no attach line says %s:\n%s", want, a.Stderr())
		}
	}
	m := mapAddr.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("the agent did not say where its map is:\n%s", a.Stderr())
	}

	const requests = 10
	c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
	for id := range requests {
		resp, err := c.Get(fmt.Sprintf("http://%s/chain?id=%d", frontAddr, id))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", id, resp.StatusCode, body)
		}
	}

	frontID, backendID := "service:"+frontName, "service:"+backendName
	var got servicemap.Map
	deadline := time.Now().Add(testenv.Timeout(t, 20*time.Second))
	for {
		var err error
		if got, err = getMap("http://" + m[1]); err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, e := range got.Edges {
			if e.Source == frontID && e.Target == backendID {
				n = e.Total.Requests
			}
		}
		if n == requests || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	nodes := map[string]string{}
	for _, n := range got.Nodes {
		if n.Kind == servicemap.KindService {
			nodes[n.ID] = n.NameSource
		}
	}
	if want := map[string]string{frontID: "config", backendID: "env"}; fmt.Sprint(nodes) != fmt.Sprint(want) {
		t.Errorf("service nodes (id: name source) %v, want %v", nodes, want)
	}
	edges := map[[2]string]int64{}
	for _, e := range got.Edges {
		edges[[2]string{e.Source, e.Target}] = e.Total.Requests
	}
	if want := map[[2]string]int64{{frontID, backendID}: requests}; fmt.Sprint(edges) != fmt.Sprint(want) {
		t.Errorf("edges %v, want %v", edges, want)
	}

	a.stop()
	instances := map[string]string{}
	servers := map[string]int{}
	for _, s := range fromJSON(a.jsonSpans()) {
		name := s.Resource["service.name"]
		if s.Kind == "server" {
			servers[name]++
		}
		if id := s.Resource["service.instance.id"]; id == "" {
			t.Errorf("span %s of %s has no service.instance.id", s.Name, name)
		} else if prev, ok := instances[name]; ok && prev != id {
			t.Errorf("%s has two service.instance.ids: %s and %s", name, prev, id)
		} else {
			instances[name] = id
		}
		switch name {
		case backendName:
			if s.Resource["deployment.environment.name"] != "test" || s.Resource["team"] != "search,ranking" ||
				s.Resource["process.pid"] != fmt.Sprint(backend.Process.Pid) {
				t.Errorf("backend span's resource %v", s.Resource)
			}
		case frontName:
			if s.Resource["team"] != "edge" {
				t.Errorf("front span's resource %v, want team=edge from the rule", s.Resource)
			}
		default:
			t.Errorf("a span of service %q", name)
		}
	}
	if servers[frontName] != requests || servers[backendName] != requests {
		t.Errorf("server spans per service %v, want %d each", servers, requests)
	}
	if instances[frontName] == instances[backendName] {
		t.Errorf("both services have service.instance.id %s", instances[frontName])
	}
}
