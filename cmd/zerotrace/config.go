package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

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
//
// Decoding is strict: an unknown key anywhere is an error, because a
// misspelt key would otherwise silently leave data unredacted.
type fileConfig struct {
	Redaction redact.Config `yaml:"redaction"`
	Spans     spansConfig   `yaml:"spans"`
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
