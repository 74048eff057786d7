package redact

import (
	"strings"
	"testing"
)

func TestDecodeConfig(t *testing.T) {
	cfg, err := DecodeConfig([]byte(`
enabled: true
disable: [phone, card]
patterns:
  - name: employee
    regex: 'EMP-\d+'
  - name: order
    regex: 'order#\d+'
    replacement: 'order#?'
sensitive_params: [ssn, tenant_pin]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Enabled == nil || !*cfg.Enabled || len(cfg.Disable) != 2 || len(cfg.Patterns) != 2 ||
		cfg.Patterns[1].Replacement != "order#?" || len(cfg.SensitiveParams) != 2 {
		t.Fatalf("decoded %+v", cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String("13812345678 ssn=1 EMP-42 order#7"); got != "13812345678 ssn=REDACTED REDACTED order#?" {
		t.Errorf("String = %q", got)
	}

	empty, err := DecodeConfig(nil)
	if err != nil || empty.Enabled != nil || empty.Disable != nil {
		t.Errorf("empty config: %+v, %v", empty, err)
	}
	off, err := DecodeConfig([]byte("enabled: false"))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := New(off); r.Enabled() || r.String("token=x") != "token=x" || r.Detectors() != nil {
		t.Error("enabled: false still redacts")
	}
}

func TestDecodeConfigStrict(t *testing.T) {
	for _, in := range []string{
		"disabled: [phone]",                         // misspelt key
		"patterns:\n  - name: x\n    regexp: 'a'\n", // unknown key in a pattern
		"enabled: maybe",
		"sensitive_params: token",
	} {
		if _, err := DecodeConfig([]byte(in)); err == nil {
			t.Errorf("DecodeConfig(%q) accepted", in)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want []string // substrings the error must contain
	}{
		{Config{Disable: []string{"phone", "phones"}}, []string{`"phones"`, "known:", "sensitive_param"}},
		{Config{Patterns: []Pattern{{Name: "bad", Regex: "a("}}}, []string{`pattern "bad"`, "missing closing )"}},
		{Config{Patterns: []Pattern{{Regex: "a"}}}, []string{"patterns[0]", "name is empty"}},
		{Config{Patterns: []Pattern{{Name: "email", Regex: "a"}}}, []string{`"email" is already used`}},
		{Config{Patterns: []Pattern{{Name: "p", Regex: "a"}, {Name: "p", Regex: "b"}}}, []string{`"p" is already used`}},
		{Config{Patterns: []Pattern{{Name: "p"}}}, []string{`pattern "p": regex is empty`}},
		{Config{SensitiveParams: []string{"ok", "not ok"}}, []string{`sensitive_params[1]`, `"not ok"`}},
		{Config{Disable: []string{"x"}, Patterns: []Pattern{{Name: "y", Regex: "["}}}, []string{`"x"`, `pattern "y"`}},
	} {
		_, err := New(c.cfg)
		if err == nil {
			t.Errorf("New(%+v) accepted", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("New(%+v) error %q does not mention %q", c.cfg, err, w)
			}
		}
	}
}
