package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/zerotrace/zerotrace/cmd/internal/agent"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/correlate/redact"
)

// fileConfig is the agent's YAML configuration file (--config):
//
//	redaction:
//	  enabled: true                 # false turns redaction off (logged loudly)
//	  disable: [phone]              # built-in detectors to turn off
//	  sensitive_params: [customer]  # more names whose values are removed
//	  patterns:                     # more values to remove (RE2)
//	    - name: employee
//	      regex: 'EMP-\d{6}'
//	spans:
//	  drop_background: true         # not export calls made outside any request
//	gen_ai:
//	  capture_content: true         # export prompts and answers (redacted); off by default
//	  max_content_bytes: 4096       # each text cut at this size
//	  prices:                       # US dollars per million tokens
//	    gpt-4o-mini: {input: 0.15, output: 0.60, cached_input: 0.075}
//	    "claude-sonnet-4*": {input: 3, output: 15}   # a prefix
//	  providers:                    # host or host:port -> gen_ai.provider.name
//	    litellm.internal:4000: openai
//	  routes:                       # more paths that are model APIs
//	    - path: /llm/v2/generate    # a whole path, or one or two last segments
//	      api: openai.chat_completions
//	services:                       # service.name by process, before its own OTEL_SERVICE_NAME
//	  - name: checkout              # every field given must match
//	    exe: "checkout-svc*"        # a glob on the executable's name (on its path if it has a /)
//	    cgroup: "/system.slice/checkout*.service"  # a glob on its cgroup (v2) path
//	    pid: 0                      # one process
//	    attributes: {deployment.environment.name: prod}
//	phases:                         # Go functions whose calls become INTERNAL spans
//	  - main.buildPrompt
//	  - github.com/acme/rag.(*Store).Search
//	  - main.Map[...]               # every instantiation of a generic function
//
// Decoding is strict: an unknown key anywhere is an error, because a
// misspelt key would otherwise silently leave data unredacted.
type fileConfig struct {
	Redaction redact.Config `yaml:"redaction"`
	Spans     spansConfig   `yaml:"spans"`
	GenAI     genAIConfig   `yaml:"gen_ai"`
	// Phases names functions of the traced Go programs, by package path
	// and function or method, whose every call becomes an INTERNAL span
	// (probes/phases): child of the span active on its goroutine, parent
	// of the calls made inside it. "[...]" stands for the type arguments
	// of a generic function or type. A function the binary lacks, or
	// that the compiler inlined everywhere, is refused with the reason.
	Phases []string `yaml:"phases"`
	// Services name the processes they match (the first rule that does),
	// before the process's own OTEL_SERVICE_NAME, --service-name and its
	// executable's name.
	Services []serviceConfig `yaml:"services"`
}

// serviceConfig is one rule of the services section.
type serviceConfig struct {
	Name       string            `yaml:"name"`
	PID        int               `yaml:"pid"`
	Exe        string            `yaml:"exe"`
	Cgroup     string            `yaml:"cgroup"`
	Attributes map[string]string `yaml:"attributes"`
}

// services checks the rules and turns them into the agent's.
func (c fileConfig) services() ([]agent.ServiceRule, error) {
	var rules []agent.ServiceRule
	for i, r := range c.Services {
		if strings.TrimSpace(r.Name) == "" {
			return nil, fmt.Errorf("rule %d: no name", i+1)
		}
		if r.PID == 0 && r.Exe == "" && r.Cgroup == "" {
			return nil, fmt.Errorf("rule %d (%s): matches every process: give pid, exe or cgroup", i+1, r.Name)
		}
		for what, glob := range map[string]string{"exe": r.Exe, "cgroup": r.Cgroup} {
			if _, err := path.Match(glob, ""); err != nil {
				return nil, fmt.Errorf("rule %d (%s): %s %q: %w", i+1, r.Name, what, glob, err)
			}
		}
		rules = append(rules, agent.ServiceRule{Name: r.Name, PID: r.PID, Exe: r.Exe, Cgroup: r.Cgroup, Attributes: r.Attributes})
	}
	return rules, nil
}

// spansConfig chooses which spans are exported.
type spansConfig struct {
	// DropBackground leaves out of the exporters the CLIENT spans a Go
	// program makes outside any request (a ticker's queries, a log
	// writer's inserts), which are roots of traces of their own and
	// marked zerotrace.background=true otherwise. The service map and the
	// metrics still count them.
	DropBackground bool `yaml:"drop_background"`
}

// genAIConfig is the gen_ai section: calls to model APIs.
type genAIConfig struct {
	// CaptureContent exports the prompts, system instructions and
	// answers of model calls (gen_ai.input.messages and the like), each
	// text cut at MaxContentBytes and through the redactor. Off by
	// default: prompts are often the most sensitive data a service has.
	CaptureContent bool `yaml:"capture_content"`
	// MaxContentBytes cuts each captured text (default 4096, at most
	// maxContentBytes).
	MaxContentBytes int `yaml:"max_content_bytes"`
	// Prices are per model name, exact or a prefix ending in '*'
	// ("gpt-4o*"); an exact name wins, then the longest prefix. A call is
	// priced by its response's model, else its request's.
	Prices map[string]priceConfig `yaml:"prices"`
	// Providers maps a host or host:port (as the client names it, or the
	// address it connects to; a model server's own address for its
	// side) to the gen_ai.provider.name its calls get instead of the
	// API's shape ("openai" for every OpenAI-compatible server).
	Providers map[string]string `yaml:"providers"`
	// Routes are more request paths that are calls to a model API.
	Routes []routeConfig `yaml:"routes"`
}

// priceConfig is one model's price, in US dollars per million tokens.
type priceConfig struct {
	Input  *float64 `yaml:"input"`
	Output *float64 `yaml:"output"`
	// CachedInput prices the input tokens read from the provider's
	// cache; unset, they cost Input.
	CachedInput *float64 `yaml:"cached_input"`
}

// routeConfig is one more path of a model API: Path is a whole path
// ("/llm/v2/generate") or, with no leading '/', its last one or two
// segments ("v2/generate"); API the shape its bodies have.
type routeConfig struct {
	Path string `yaml:"path"`
	API  string `yaml:"api"`
}

// maxContentBytes bounds gen_ai.max_content_bytes: an exchange keeps up to
// genai.MaxMessages texts a side of that size while the call lasts.
const maxContentBytes = 64 << 10

// genAI checks the gen_ai section and builds what the correlator takes
// from it.
func (c genAIConfig) genAI() (*genai.Config, error) {
	out := &genai.Config{Content: c.CaptureContent, MaxContent: c.MaxContentBytes}
	if c.MaxContentBytes < 0 || c.MaxContentBytes > maxContentBytes {
		return nil, fmt.Errorf("max_content_bytes %d: want 1 to %d (0: the default, %d)", c.MaxContentBytes, maxContentBytes, genai.DefaultMaxContent)
	}
	if len(c.Prices) > 0 {
		table := make(map[string]genai.Price, len(c.Prices))
		for name, p := range c.Prices {
			if p.Input == nil || p.Output == nil {
				return nil, fmt.Errorf("prices: model %q: give both input and output (US dollars per million tokens)", name)
			}
			pr := genai.Price{Input: *p.Input, Output: *p.Output}
			if p.CachedInput != nil {
				pr.CachedInput = *p.CachedInput
			}
			table[name] = pr
		}
		var err error
		if out.Prices, err = genai.NewPrices(table); err != nil {
			return nil, fmt.Errorf("prices: %w", err)
		}
	}
	if len(c.Providers) > 0 {
		out.Providers = make(map[string]string, len(c.Providers))
		for host, name := range c.Providers {
			h, err := genai.ParseProviderHost(host)
			if err != nil {
				return nil, fmt.Errorf("providers: %w", err)
			}
			if name = strings.TrimSpace(name); name == "" || strings.ContainsAny(name, " \t\"") {
				return nil, fmt.Errorf("providers: %q: provider name %q: want a name such as openai or aws.bedrock", host, name)
			}
			if _, dup := out.Providers[h]; dup {
				return nil, fmt.Errorf("providers: %q is given twice", h)
			}
			out.Providers[h] = name
		}
	}
	if len(c.Routes) > 0 {
		out.Routes = genai.NewRoutes()
		for _, r := range c.Routes {
			api, err := genai.ParseRoute(r.Path, r.API)
			if err != nil {
				return nil, fmt.Errorf("routes: %w", err)
			}
			if strings.HasPrefix(r.Path, "/") {
				out.Routes.AddPath(r.Path, api)
			} else {
				out.Routes.Add(r.Path, api)
			}
		}
	}
	return out, nil
}

// loadConfig reads path; "" gives the defaults.
func loadConfig(path string) (fileConfig, error) {
	var cfg fileConfig
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("reading --config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return fileConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := cfg.GenAI.genAI(); err != nil {
		return fileConfig{}, fmt.Errorf("config %s: gen_ai: %w", path, err)
	}
	if _, err := cfg.services(); err != nil {
		return fileConfig{}, fmt.Errorf("config %s: services: %w", path, err)
	}
	return cfg, nil
}

// newRedactor builds the redactor the config asks for, and says on stderr,
// once and plainly, when that means no redaction at all.
func newRedactor(cfg fileConfig, path string, stderr io.Writer) (*redact.Redactor, error) {
	r, err := redact.New(cfg.Redaction)
	if err != nil {
		return nil, fmt.Errorf("config %s: redaction: %w", path, err)
	}
	if !r.Enabled() {
		fmt.Fprintf(stderr, "zerotrace: WARNING: redaction is OFF (redaction.enabled: false in %s): "+
			"URLs, queries and error messages leave the agent exactly as captured\n", path)
	}
	return r, nil
}
