package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigSpans(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := loadConfig(write("ok.yaml", "spans:\n  drop_background: true\nredaction:\n  disable: [phone]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Spans.DropBackground {
		t.Error("spans.drop_background: true was not read")
	}
	if cfg, _ := loadConfig(""); cfg.Spans.DropBackground {
		t.Error("background spans are dropped by default")
	}
	// Strict: a misspelt key is an error, not a silent default.
	_, err = loadConfig(write("typo.yaml", "spans:\n  drop_backgroud: true\n"))
	if err == nil || !strings.Contains(err.Error(), "drop_backgroud") {
		t.Errorf("misspelt key: %v, want an error naming it", err)
	}
}

func TestLoadConfigGenAI(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := loadConfig(write(`gen_ai:
  capture_content: true
  max_content_bytes: 1000
  prices:
    gpt-4o-mini: {input: 0.15, output: 0.6, cached_input: 0.075}
    "claude-*": {input: 3, output: 15}
  providers:
    LiteLLM.internal:4000: openai
    10.0.0.7: vllm
  routes:
    - path: /llm/v2/generate
      api: ollama.generate
    - path: v9/chat
      api: openai.chat_completions
`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.GenAI.genAI()
	if err != nil {
		t.Fatal(err)
	}
	if !g.Content || g.MaxContent != 1000 || g.Providers["litellm.internal:4000"] != "openai" || g.Providers["10.0.0.7"] != "vllm" {
		t.Errorf("config %+v", g)
	}
	if p, ok := g.Prices.Lookup("claude-sonnet-4"); !ok || p.Output != 15 {
		t.Errorf("prefix price %v %v", p, ok)
	}
	if p, _ := g.Prices.Lookup("gpt-4o-mini"); p.CachedInput != 0.075 {
		t.Errorf("cached input price %v", p)
	}
	for path, want := range map[string]bool{"/llm/v2/generate": true, "/gw/v9/chat": true, "/v1/messages": true, "/v9/other": false} {
		if _, ok := g.Recognize("POST", path); ok != want {
			t.Errorf("route %s recognised %v", path, ok)
		}
	}

	// Off by default.
	cfg, _ = loadConfig("")
	if g, _ := cfg.GenAI.genAI(); g.Content || g.Prices != nil || g.Routes != nil {
		t.Errorf("defaults %+v", g)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"gen_ai:\n  capture_contents: true\n", "capture_contents"},
		{"gen_ai:\n  max_content_bytes: -1\n", "max_content_bytes -1"},
		{"gen_ai:\n  max_content_bytes: 10000000\n", "want 1 to 65536"},
		{"gen_ai:\n  prices:\n    m: {input: 1}\n", `model "m": give both input and output`},
		{"gen_ai:\n  prices:\n    m: {input: 1, output: -2}\n", "output price -2"},
		{"gen_ai:\n  prices:\n    m: {input: 1, output: 2, cache: 1}\n", "cache"},
		{"gen_ai:\n  prices:\n    'a*b': {input: 1, output: 2}\n", "'*' may only end"},
		{"gen_ai:\n  providers:\n    'http://x': openai\n", "no scheme"},
		{"gen_ai:\n  providers:\n    x: ''\n", "provider name"},
		{"gen_ai:\n  providers:\n    X: a\n    x: b\n", "given twice"},
		{"gen_ai:\n  routes:\n    - path: /x\n      api: openai_chat\n", "openai.chat_completions"},
		{"gen_ai:\n  routes:\n    - path: a/b/c\n      api: ollama.chat\n", "one or two segments"},
		{"gen_ai:\n  routes:\n    - path: /x\n      api: ollama.chat\n      method: GET\n", "method"},
	} {
		_, err := loadConfig(write(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.yaml, err, tc.want)
		}
	}
}

func TestLoadConfigServices(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := loadConfig(write(`services:
  - name: checkout
    exe: "checkout-svc*"
    attributes: {deployment.environment.name: prod}
  - name: worker
    cgroup: "/system.slice/worker*.service"
    pid: 42
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := cfg.services()
	if err != nil || len(rules) != 2 || rules[0].Name != "checkout" || rules[0].Attributes["deployment.environment.name"] != "prod" ||
		rules[1].PID != 42 || rules[1].Cgroup != "/system.slice/worker*.service" {
		t.Fatalf("rules %+v, %v", rules, err)
	}
	for _, bad := range []string{
		"services:\n  - exe: x\n",                // no name
		"services:\n  - name: all\n",             // matches every process
		"services:\n  - name: b\n    exe: '['\n", // a bad glob
		"services:\n  - name: b\n    host: x\n",  // an unknown key
	} {
		if _, err := loadConfig(write(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
