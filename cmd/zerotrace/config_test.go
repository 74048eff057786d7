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
