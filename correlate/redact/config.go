package redact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config selects what a Redactor removes. The zero value redacts with every
// built-in detector.
type Config struct {
	// Enabled turns redaction on or off as a whole; nil means on, so that a
	// missing key can never switch privacy off by accident.
	Enabled *bool `yaml:"enabled"`
	// Disable lists built-in detectors (see BuiltinDetectors) to turn off.
	Disable []string `yaml:"disable"`
	// Patterns are extra regular expressions whose matches are replaced.
	Patterns []Pattern `yaml:"patterns"`
	// SensitiveParams are extra query, DSN and JSON key names whose values are
	// always redacted. They are matched as words, ignoring case: "ssn" matches
	// ssn, user_ssn and userSsn but not classname.
	SensitiveParams []string `yaml:"sensitive_params"`
}

// Pattern is a user-supplied regular expression (RE2 syntax, as in package
// regexp). Patterns run after the built-in detectors, on every value, so each
// one costs a regexp scan per value: prefer patterns with a literal prefix,
// which regexp can skip to quickly.
type Pattern struct {
	// Name identifies the pattern in errors and in Redactor.Detectors.
	Name string `yaml:"name"`
	// Regex is the expression to find.
	Regex string `yaml:"regex"`
	// Replacement replaces each match; it may refer to submatches as $1 or
	// ${name} (regexp.Regexp.Expand). Empty means Marker.
	Replacement string `yaml:"replacement"`
}

// DecodeConfig parses a YAML redaction config. It is strict: an unknown key
// is an error, because a misspelt "disable" or "sensitive_params" would
// otherwise silently leave data unredacted. Empty input gives the zero Config.
func DecodeConfig(yamlBytes []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(yamlBytes))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("decoding redaction config: %w", err)
	}
	return cfg, nil
}

// BuiltinDetectors returns the names of all built-in detectors, in the order
// they are documented.
func BuiltinDetectors() []string {
	out := make([]string, len(builtinNames))
	copy(out, builtinNames[:])
	return out
}

// New validates cfg and builds a Redactor. Unknown detector names, empty or
// duplicate pattern names, bad regular expressions and malformed parameter
// names are errors that name the offending entry.
func New(cfg Config) (*Redactor, error) {
	r := &Redactor{enabled: cfg.Enabled == nil || *cfg.Enabled, on: allDetectors}
	var errs []error
	for _, name := range cfg.Disable {
		bit, ok := detectorBit(name)
		if !ok {
			errs = append(errs, fmt.Errorf("disable: unknown detector %q (known: %s)",
				name, strings.Join(builtinNames[:], ", ")))
			continue
		}
		r.on &^= bit
	}
	seen := map[string]bool{}
	for i, p := range cfg.Patterns {
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("patterns[%d]: name is empty", i))
			continue
		}
		if _, builtin := detectorBit(p.Name); builtin || seen[p.Name] {
			errs = append(errs, fmt.Errorf("patterns[%d]: name %q is already used", i, p.Name))
			continue
		}
		seen[p.Name] = true
		if p.Regex == "" {
			errs = append(errs, fmt.Errorf("pattern %q: regex is empty", p.Name))
			continue
		}
		re, err := regexp.Compile(p.Regex)
		if err != nil {
			errs = append(errs, fmt.Errorf("pattern %q: %w", p.Name, err))
			continue
		}
		repl := p.Replacement
		if repl == "" {
			repl = Marker
		}
		r.patterns = append(r.patterns, compiledPattern{name: p.Name, re: re, repl: repl})
	}
	for i, name := range cfg.SensitiveParams {
		if !validParamName(name) {
			errs = append(errs, fmt.Errorf("sensitive_params[%d]: %q is not a parameter name (letters, digits, _ . - only)", i, name))
			continue
		}
		r.extraTerms = append(r.extraTerms, termsOf(nil, []string{strings.ToLower(name)})...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("redaction config: %w", err)
	}
	for i, name := range builtinNames {
		if r.on&(1<<i) != 0 {
			r.active = append(r.active, name)
		}
	}
	for _, p := range r.patterns {
		r.active = append(r.active, p.name)
	}
	return r, nil
}

func validParamName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}
