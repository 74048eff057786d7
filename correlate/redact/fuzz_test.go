package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// checkRedaction asserts the properties every redaction output must have.
func checkRedaction(t *testing.T, what, in, out string, again func(string) string) {
	t.Helper()
	if utf8.ValidString(in) && !utf8.ValidString(out) {
		t.Fatalf("%s(%q) = %q: invalid UTF-8", what, in, out)
	}
	// Each match grows by at most len(Marker)-1 and leaves a marker behind.
	if limit := len(in) + (len(Marker)-1)*strings.Count(out, Marker); len(out) > limit {
		t.Fatalf("%s(%q) = %q: %d bytes, more than %d", what, in, out, len(out), limit)
	}
	if len(out) > len(in)+maxGrowth+len(Marker) {
		t.Fatalf("%s(%q): grew from %d to %d bytes", what, in, len(in), len(out))
	}
	if out2 := again(out); out2 != out {
		t.Fatalf("%s not idempotent:\n in   %q\n out  %q\n out2 %q", what, in, out, out2)
	}
}

func seedCorpus(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.In)
	}
	for _, v := range spanValues {
		f.Add(v)
	}
}

func FuzzString(f *testing.F) {
	seedCorpus(f)
	r := mustNew(f, Config{})
	f.Fuzz(func(t *testing.T, in string) {
		checkRedaction(t, "String", in, r.String(in), r.String)
	})
}

func FuzzURLQuery(f *testing.F) {
	seedCorpus(f)
	r := mustNew(f, Config{})
	f.Fuzz(func(t *testing.T, in string) {
		checkRedaction(t, "URLQuery", in, r.URLQuery(in), r.URLQuery)
		checkRedaction(t, "URL", in, r.URL(in), r.URL)
	})
}

func FuzzSanitizeSQL(f *testing.F) {
	for _, q := range sqlBench {
		f.Add(q)
	}
	for _, q := range []string{
		"SELECT * FROM t WHERE a IN (1, 'x''y', ?) -- c\n/* d /* e */ */",
		"SELECT $tag$x$tag$, $1, E'\\'', 0x1F, 1.5e-3, \"q\"\"i\", `b`",
		"WITH a AS (SELECT 1) UPDATE [dbo].[t] SET x = :v",
		"INSERT INTO `db`.`t` (a) VALUES (-1), (.5)",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := SanitizeSQL(in)
		if utf8.ValidString(in) && !utf8.ValidString(out) {
			t.Fatalf("SanitizeSQL(%q) = %q: invalid UTF-8", in, out)
		}
		if len(out) > len(in) {
			t.Fatalf("SanitizeSQL(%q) = %q: grew", in, out)
		}
		if again := SanitizeSQL(out); again != out {
			t.Fatalf("SanitizeSQL not idempotent:\n in   %q\n out  %q\n out2 %q", in, out, again)
		}
		if op := SQLOperation(in); strings.ToUpper(op) != op {
			t.Fatalf("SQLOperation(%q) = %q: not upper case", in, op)
		}
		_ = SQLCollection(in)
	})
}
