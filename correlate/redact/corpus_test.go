package redact

import (
	"encoding/json"
	"os"
	"testing"
)

// corpusCase is one entry of testdata/corpus.json. Out is nil when the input
// must come back unchanged, which is how the tricky negatives are written.
type corpusCase struct {
	Name string  `json:"name"`
	Mode string  `json:"mode"` // "" (String), "query" (URLQuery) or "url" (URL)
	In   string  `json:"in"`
	Out  *string `json:"out"`
}

func loadCorpus(t testing.TB) []corpusCase {
	t.Helper()
	data, err := os.ReadFile("testdata/corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []corpusCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("parsing corpus: %v", err)
	}
	if len(cases) < 100 {
		t.Fatalf("corpus has only %d cases", len(cases))
	}
	return cases
}

func redactWith(r *Redactor, mode, in string) string {
	switch mode {
	case "query":
		return r.URLQuery(in)
	case "url":
		return r.URL(in)
	case "":
		return r.String(in)
	}
	panic("unknown corpus mode " + mode)
}

// TestCorpus runs every positive and tricky negative of the corpus, and
// checks that redacting the output again changes nothing.
func TestCorpus(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range loadCorpus(t) {
		if names[c.Name] {
			t.Errorf("duplicate corpus name %q", c.Name)
		}
		names[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			want := c.In
			if c.Out != nil {
				want = *c.Out
				if want == c.In {
					t.Fatalf("out equals in; omit out for unchanged cases")
				}
			}
			got := redactWith(r, c.Mode, c.In)
			if got != want {
				t.Errorf("redact(%q)\n got %q\nwant %q", c.In, got, want)
			}
			if again := redactWith(r, c.Mode, got); again != got {
				t.Errorf("not idempotent: %q -> %q", got, again)
			}
		})
	}
}

// TestCorpusDisabled checks that a disabled Redactor returns every corpus
// input unchanged.
func TestCorpusDisabled(t *testing.T) {
	off := false
	r, err := New(Config{Enabled: &off})
	if err != nil {
		t.Fatal(err)
	}
	if r.Enabled() {
		t.Fatal("Enabled() = true for enabled: false")
	}
	for _, c := range loadCorpus(t) {
		if got := redactWith(r, c.Mode, c.In); got != c.In {
			t.Errorf("%s: disabled redactor changed %q to %q", c.Name, c.In, got)
		}
	}
}
