package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export/servicemap"
	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// The prompt of TestGenAIConfig's calls: a distinctive word, and an API
// key the redactor must remove (the key's own distinctive part is
// genAISecret); the answer's words are genAIAnswer0, genAIAnswer1, ...
const (
	genAIPrompt  = "zt-canary-prompt, my key is sk-proj-" + genAISecret + " thanks"
	genAISecret  = "Zt0pS3cretK3yAbCdEfGh1234"
	genAIAnswer  = "ztcanaryanswer"
	genAIOptions = "ttft=60,gap=10,chunks=5,in=1000,out=500,say=" + genAIAnswer
)

// TestGenAIConfig runs the agent with a gen_ai configuration (a price
// table with a prefix, content capture on, the model server's address
// mapped to a provider) on the Python model server traced from the
// kernel, and a Go client making a streamed and a plain chat completion.
// In Jaeger each call's SERVER span has the configured provider, the cost
// by the price table, and the prompt and the answer as the conventions'
// messages, the API key in the prompt redacted; /metrics has the token
// usage, duration and time-to-first-token histograms and the cost
// counter with the right labels. Run again with capture off, no prompt or
// answer text appears anywhere: JSON output, stderr, Jaeger, /metrics.
func TestGenAIConfig(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	j := jaeger.Start(t)
	srv := testenv.StartPyModelServer(t)
	_, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprint(srv.Cmd.Process.Pid)

	run := func(capture bool) (a *agent, service, metrics string) {
		service = fmt.Sprintf("e2e-genai-%v-%d", capture, time.Now().UnixNano())
		config := writeConfig(t, fmt.Sprintf(`
gen_ai:
  capture_content: %v
  max_content_bytes: 512
  prices:
    "gpt-zt*": {input: 2, output: 8}
    gpt-zt-other: {input: 100, output: 100}
  providers:
    %q: acme-vllm
`, capture, srv.Addr))
		a = startAgent(t, zt, nil, "attach", "--pid", pid, "--output", "json", "--service-name", service,
			"--otlp-endpoint", j.OTLPEndpoint(), "--listen", "127.0.0.1:0", "--config", config)
		m := mapAddr.FindStringSubmatch(a.Stderr())
		if m == nil {
			t.Fatalf("the agent did not say where /metrics is:\n%s", a.Stderr())
		}
		if said := strings.Contains(a.Stderr(), "prompts and answers are exported"); said != capture {
			t.Errorf("capture %v: the agent says it exports content: %v\n%s", capture, said, a.Stderr())
		}
		for _, stream := range []bool{true, false} {
			genAICall(t, srv, stream)
		}
		// Both calls' spans are counted once their stream ended.
		metrics = waitMetrics(t, "http://"+m[1]+"/metrics", `gen_ai_server_request_duration_seconds_count{`, 2)
		checkModelNode(t, "http://"+m[1]+"/api/map", service)
		if capture {
			checkModelPage(t, "http://"+m[1]+"/", service)
		}
		a.stop()
		return a, service, metrics
	}

	// Content captured: provider, cost, messages redacted.
	a, service, metrics := run(true)
	spans := genAIServerSpans(t, j, service, 2)
	for i, s := range spans {
		for k, want := range map[string]string{
			"gen_ai.provider.name":      "acme-vllm",
			"gen_ai.request.model":      "gpt-zt-1",
			"gen_ai.usage.input_tokens": "1000",
			"zerotrace.gen_ai.cost_usd": "0.006", // 1000 × 2 + 500 × 8 per million
		} {
			if s.Attrs[k] != want {
				t.Errorf("span %d (%s): %s = %q, want %q", i, s.Name, k, s.Attrs[k], want)
			}
		}
		in, out := s.Attrs["gen_ai.input.messages"], s.Attrs["gen_ai.output.messages"]
		if !strings.Contains(in, `"role":"user"`) || !strings.Contains(in, "zt-canary-prompt, my key is") || !strings.Contains(in, "REDACTED") {
			t.Errorf("span %d: input messages %q: want the prompt, its key redacted", i, in)
		}
		if !strings.Contains(out, `"role":"assistant"`) || !strings.Contains(out, genAIAnswer+"0 ") {
			t.Errorf("span %d: output messages %q: want the answer", i, out)
		}
	}
	raw := jaegerRaw(t, j, service)
	for where, text := range map[string]string{"JSON output": a.Stdout(), "stderr": a.Stderr(), "Jaeger": raw, "/metrics": metrics} {
		if strings.Contains(text, genAISecret) {
			t.Errorf("the API key in the prompt appears in the %s", where)
		}
	}
	if !strings.Contains(raw, "zt-canary-prompt") {
		t.Error("the captured prompt is not in Jaeger")
	}
	labels := fmt.Sprintf(`service_name=%q,gen_ai_operation_name="chat",gen_ai_provider_name="acme-vllm"`, service)
	model := fmt.Sprintf(`gen_ai_request_model="gpt-zt-1",gen_ai_response_model="gpt-zt-1",server_address="127.0.0.1",server_port=%q`, port)
	for _, want := range []string{
		`zerotrace_gen_ai_server_token_usage_count{` + labels + `,gen_ai_token_type="input",` + model + `} 2`,
		`zerotrace_gen_ai_server_token_usage_sum{` + labels + `,gen_ai_token_type="output",` + model + `} 1000`,
		`gen_ai_server_request_duration_seconds_count{` + labels + `,` + model + `} 2`,
		// Only the stream has a first token the capture saw leave.
		`gen_ai_server_time_to_first_token_seconds_count{` + labels + `,` + model + `} 1`,
		fmt.Sprintf(`zerotrace_gen_ai_cost_usd_total{service_name=%q,gen_ai_provider_name="acme-vllm",`, service) + `gen_ai_request_model="gpt-zt-1",gen_ai_response_model="gpt-zt-1",span_kind="server"} 0.012 # {trace_id="`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, genAILines(metrics))
		}
	}
	// The first token after the server's 60 ms: no observation in the
	// buckets below.
	if want := `gen_ai_server_time_to_first_token_seconds_bucket{` + labels + `,` + model + `,le="0.04"} 0`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q:\n%s", want, genAILines(metrics))
	}

	// Capture off: no prompt or answer text anywhere.
	a, service, metrics = run(false)
	spans = genAIServerSpans(t, j, service, 2)
	for i, s := range spans {
		if s.Attrs["zerotrace.gen_ai.cost_usd"] != "0.006" {
			t.Errorf("capture off, span %d: cost %q", i, s.Attrs["zerotrace.gen_ai.cost_usd"])
		}
	}
	raw = jaegerRaw(t, j, service)
	for where, text := range map[string]string{"JSON output": a.Stdout(), "stderr": a.Stderr(), "Jaeger": raw, "/metrics": metrics} {
		for _, secret := range []string{"zt-canary-prompt", genAISecret, genAIAnswer, "gen_ai.input.messages", "gen_ai.output.messages"} {
			if strings.Contains(text, secret) {
				t.Errorf("capture off: %q appears in the %s", secret, where)
			}
		}
	}
}

// checkModelNode checks the map's node of the traced model server: a
// service that answered the two calls, with their provider, model, tokens
// and the stream's time to first token.
func checkModelNode(t *testing.T, url, service string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m servicemap.Map
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decoding the map: %v", err)
	}
	for _, n := range m.Nodes {
		if n.ID != "service:"+service {
			continue
		}
		g := n.GenAI
		if g == nil || g.Requests != 2 || g.Errors != 0 || strings.Join(g.Providers, ",") != "acme-vllm" ||
			strings.Join(g.Models, ",") != "gpt-zt-1" || g.InputTokens != 2000 || g.OutputTokens != 1000 ||
			g.TTFTP50Ms < 59 || g.CostUSD < 0.0119 || g.CostUSD > 0.0121 {
			t.Errorf("map node %s: model calls %+v", n.ID, g)
		}
		return
	}
	t.Errorf("the map has no node for %s: %+v", service, m.Nodes)
}

// checkModelPage loads the map page in headless Chromium: the model
// server's row says it answered model calls, with its model, and the page
// is saved to .cache/genai-map.png.
func checkModelPage(t *testing.T, base, service string) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing: run scripts/setup.sh", chromium)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=10000"}
	out, err := exec.Command(chromium, append(args, "--dump-dom", base)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	row := regexp.MustCompile(`<tr class="node" data-id="service:` + regexp.QuoteMeta(service) + `" data-kind="service" data-genai="true"[^>]*>(.*?)</tr>`)
	if m := row.FindStringSubmatch(string(out)); m == nil || !strings.Contains(m[1], "gpt-zt-1 · ") {
		t.Errorf("the page shows no model calls for %s: %v", service, m)
	}
	shot := filepath.Join(testenv.RepoRoot(t), ".cache", "genai-map.png")
	if out, err := exec.Command(chromium, append(args, "--window-size=1280,720", "--screenshot="+shot, base)...).CombinedOutput(); err != nil {
		t.Errorf("chromium --screenshot: %v\n%s", err, out)
	}
}

// genAICall makes one chat completion to srv, streamed or not, with
// genAIPrompt and genAIOptions.
func genAICall(t *testing.T, srv *testenv.ModelServer, stream bool) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"gpt-zt-1","messages":[{"role":"user","content":%q}],"stream":%v,"stream_options":{"include_usage":true}}`, genAIPrompt, stream)
	if !stream {
		body = fmt.Sprintf(`{"model":"gpt-zt-1","messages":[{"role":"user","content":%q}]}`, genAIPrompt)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL()+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(modelspec.OptionsHeader, genAIOptions)
	// A connection of its own: the first request on one left idle from
	// the first run would be read by a thread already blocked in recv
	// when the second agent attached, which the kernel path cannot see.
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second), Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), genAIAnswer+"4") {
		t.Fatalf("stream %v: status %d, %v: %q", stream, resp.StatusCode, err, b)
	}
}

// genAIServerSpans reads the service's n GenAI server spans from Jaeger.
func genAIServerSpans(t *testing.T, j *jaeger.Jaeger, service string, n int) []observed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(t, 60*time.Second))
	defer cancel()
	js, err := j.WaitForSpans(ctx, service, n, testenv.Timeout(t, 30*time.Second))
	if err != nil {
		t.Fatalf("reading the spans back from Jaeger: %v", err)
	}
	var out []observed
	for _, s := range fromJaeger(js) {
		if s.Kind == "server" && s.Attrs["gen_ai.operation.name"] == "chat" {
			out = append(out, s)
		}
	}
	if len(out) != n {
		t.Fatalf("%d GenAI server spans in Jaeger, want %d: %v", len(out), n, out)
	}
	return out
}

// waitMetrics scrapes url until the series starting with prefix counts n
// (the last scrape is returned; the caller's checks say what is wrong).
func waitMetrics(t *testing.T, url, prefix string, n int) string {
	t.Helper()
	deadline := time.Now().Add(testenv.Timeout(t, 10*time.Second))
	for {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(b)
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, prefix) && strings.HasSuffix(line, "} "+strconv.Itoa(n)) {
				return text
			}
		}
		if time.Now().After(deadline) {
			return text
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// genAILines are the GenAI lines of a scrape, for a failure's message.
func genAILines(metrics string) string {
	var b strings.Builder
	for _, line := range strings.Split(metrics, "\n") {
		if strings.Contains(line, "gen_ai") && !strings.Contains(line, "_bucket{") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
