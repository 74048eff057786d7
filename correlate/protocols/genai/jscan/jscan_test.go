package jscan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// rec is one reported value as the tests compare them.
type rec struct {
	path  string
	kind  Kind
	value string
	cut   bool
	end   bool
}

func (r rec) String() string {
	return fmt.Sprintf("%s %d %q cut=%v end=%v", r.path, r.kind, r.value, r.cut, r.end)
}

// recorder records every event; texts are joined into one record.
type recorder struct {
	got  []rec
	text strings.Builder
}

func (r *recorder) Field(ev *Event) {
	if ev.Kind == Text {
		r.text.Write(ev.Value)
		if ev.End {
			r.got = append(r.got, rec{path: string(ev.Path), kind: String, value: r.text.String()})
			r.text.Reset()
		}
		return
	}
	r.got = append(r.got, rec{path: string(ev.Path), kind: ev.Kind, value: string(ev.Value), cut: ev.Cut, end: ev.End})
}

// expected walks a valid document with encoding/json and lists what a
// Scanner watching every path reports, within its bounds (keys, depth and
// paths past them are never reported; long values are cut). weird is set
// when a key would make paths ambiguous ('.', '?', "[]" in it), which
// the comparison then skips.
func expected(t testing.TB, doc []byte, texts bool) (want []rec, paths []string, weird bool) {
	return walkDoc(t, doc, texts, false)
}

// walkDoc is expected, or with raw every value at its path, whatever the
// Scanner's bounds (what Tail's "?" keys may stand for).
func walkDoc(t testing.TB, doc []byte, texts, raw bool) (want []rec, paths []string, weird bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	seen := map[string]bool{}
	add := func(path string, ok bool, r rec) {
		if !raw && (!ok || path == "") {
			return
		}
		r.path = path
		if !seen[path] {
			seen[path] = true
			paths = append(paths, path)
		}
		want = append(want, r)
	}
	// join adds a segment to the path of a container at level.
	join := func(parent, seg string, level int) string {
		if level == 0 {
			return seg
		}
		return parent + "." + seg
	}
	token := func() json.Token {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		return tok
	}
	// walk reads one value at path, which is reported when ok; level is
	// the nesting of the container holding it (0 for a document).
	var walk func(path string, ok bool, level int)
	walk = func(path string, ok bool, level int) {
		switch v := token().(type) {
		case json.Delim:
			obj := v == '{'
			kind := Array
			if obj {
				kind = Object
			}
			ok = ok && level+1 <= MaxDepth
			add(path, ok, rec{kind: kind})
			for dec.More() {
				if obj {
					k := token().(string)
					if strings.ContainsAny(k, ".?[\x00") {
						weird = true
					}
					kp := join(path, k, level)
					walk(kp, ok && k != "" && len(k) <= maxKey && len(kp) <= maxPath, level+1)
				} else {
					ep := join(path, "[]", level)
					walk(ep, ok && len(ep) <= maxPath, level+1)
				}
			}
			token() // the closing bracket
			add(path, ok, rec{kind: kind, end: true})
		case string:
			r := rec{kind: String, value: v}
			if !texts && len(v) > MaxValue {
				r.value, r.cut = v[:MaxValue], true
			}
			add(path, ok, r)
		case json.Number:
			add(path, ok, rec{kind: Number, value: string(v)})
		case bool:
			add(path, ok, rec{kind: Bool, value: fmt.Sprint(v)})
		case nil:
			add(path, ok, rec{kind: Null, value: "null"})
		}
	}
	for dec.More() {
		walk("", true, 0)
	}
	return want, paths, weird
}

func watchAll(paths []string, texts bool) *Paths {
	p := NewPaths()
	for i, path := range paths {
		if texts {
			p.Text(path, i)
		} else {
			p.Value(path, i)
		}
	}
	return p
}

// compare checks got against want, allowing a cut value to end short of
// MaxValue by part of a rune (the scanner keeps an escaped rune whole).
func compare(t testing.TB, doc []byte, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%q:\n got %d events %v\nwant %d events %v", doc, len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.cut && w.cut && len(g.value) > MaxValue-utf8.UTFMax && strings.HasPrefix(w.value, g.value) {
			g.value = w.value
		}
		if g != w {
			t.Fatalf("%q: event %d\n got %v\nwant %v", doc, i, g, w)
		}
	}
}

func scanSplit(doc []byte, paths *Paths, splits []int) (*Scanner, *recorder) {
	var s Scanner
	r := &recorder{}
	s.Reset(paths, r)
	prev := 0
	for _, at := range splits {
		s.Feed(doc[prev:at])
		prev = at
	}
	s.Feed(doc[prev:])
	return &s, r
}

var chatRequest = `{"messages":[{"content":"You are terse.","role":"system"},{"content":[{"type":"text","text":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/"}],"role":"user"}],
 "model":"gpt-4o-mini","max_completion_tokens":256,"temperature":0.2,"top_p":1e-1,"n":1,"stop":["\n\n","END"],
 "stream_options":{"include_usage":true},"stream":true,"logit_bias":{"50256":-100},"seed":-7,"user":null,"deep":` + strings.Repeat("[", 20) + "1" + strings.Repeat("]", 20) + `,"after":false}`

func TestScannerEverySplit(t *testing.T) {
	doc := []byte(chatRequest)
	want, paths, _ := expected(t, doc, false)
	if len(want) < 20 {
		t.Fatalf("walk found only %v", want)
	}
	p := watchAll(paths, false)
	_, whole := scanSplit(doc, p, nil)
	compare(t, doc, whole.got, want)
	for i := 0; i <= len(doc); i++ {
		for j := i; j <= len(doc); j += 7 {
			s, r := scanSplit(doc, p, []int{i, j})
			compare(t, doc, r.got, want)
			if s.Broken() || s.Docs() != 1 || s.InDoc() {
				t.Fatalf("split %d,%d: broken=%v docs=%d in=%v", i, j, s.Broken(), s.Docs(), s.InDoc())
			}
		}
	}
}

func TestScannerValues(t *testing.T) {
	p := NewPaths().Value("model", 1).Value("stop", 2).Value("stop.[]", 3).Text("messages.[].content", 4).
		Value("messages.[]", 5).Value("temperature", 6).Value("stream", 7)
	r := &recorder{}
	var s Scanner
	s.Reset(p, r)
	s.Feed([]byte(chatRequest))
	got := map[string][]string{}
	for _, e := range r.got {
		got[e.path] = append(got[e.path], fmt.Sprintf("%d:%s", e.kind, e.value))
	}
	for path, want := range map[string][]string{
		"model":               {"1:gpt-4o-mini"},
		"stop":                {"6:", "6:"},
		"stop.[]":             {"1:\n\n", "1:END"},
		"messages.[].content": {"1:You are terse.", "6:", "6:"}, // the parts array's start and end
		"messages.[]":         {"5:", "5:", "5:", "5:"},
		"temperature":         {"2:0.2"},
		"stream":              {"3:true"},
	} {
		if fmt.Sprint(got[path]) != fmt.Sprint(want) {
			t.Errorf("%s: got %q, want %q", path, got[path], want)
		}
	}
	// The user message's content is an array of parts: no text at the
	// content path itself.
	p2 := NewPaths().Text("messages.[].content.[].text", 1)
	r2 := &recorder{}
	s.Reset(p2, r2)
	for _, c := range []byte(chatRequest) {
		s.Feed([]byte{c})
	}
	if len(r2.got) != 1 || r2.got[0].value != "café 😀 \"q\" \\ /" {
		t.Errorf("escaped text: %v", r2.got)
	}
}

// TestTextFragments: a watched text of any length arrives whole, in
// fragments of at most MaxValue, whatever the split; an unwatched one of
// the same length costs no memory.
func TestTextFragments(t *testing.T) {
	long := strings.Repeat("abcdefgh\\n", 1000)
	doc := []byte(`{"a":"` + long + `","b":"x"}`)
	p := NewPaths().Text("a", 1).Value("b", 2)
	for _, step := range []int{1, 3, 255, 256, 257, 4096, len(doc)} {
		var s Scanner
		r := &fragments{}
		s.Reset(p, r)
		for i := 0; i < len(doc); i += step {
			s.Feed(doc[i:min(i+step, len(doc))])
		}
		if want := strings.ReplaceAll(long, `\n`, "\n"); r.text.String() != want || !r.ended || r.b != "x" {
			t.Fatalf("step %d: %d bytes, ended %v, b %q", step, r.text.Len(), r.ended, r.b)
		}
		if r.maxFrag > MaxValue {
			t.Errorf("step %d: a fragment of %d bytes", step, r.maxFrag)
		}
	}
}

type fragments struct {
	text    strings.Builder
	ended   bool
	maxFrag int
	b       string
}

func (f *fragments) Field(ev *Event) {
	switch ev.ID {
	case 1:
		f.text.Write(ev.Value)
		f.ended = ev.End
		f.maxFrag = max(f.maxFrag, len(ev.Value))
	case 2:
		f.b = string(ev.Value)
	}
}

func TestScannerNDJSONAndBroken(t *testing.T) {
	p := NewPaths().Value("done", 1)
	r := &recorder{}
	var s Scanner
	s.Reset(p, r)
	s.Feed([]byte("{\"done\":false}\n{\"done\":"))
	if s.Docs() != 1 || !s.InDoc() {
		t.Errorf("docs %d in %v", s.Docs(), s.InDoc())
	}
	s.Feed([]byte("true}\n"))
	if s.Docs() != 2 || s.InDoc() || len(r.got) != 2 || r.got[1].value != "true" {
		t.Errorf("docs %d events %v", s.Docs(), r.got)
	}
	for _, bad := range []string{"<html>", `{"a" 1}`, `{"a":tru}`, `{"a":01}`, `{"a":"\x"}`, `[1,]]`, `{"a":1}}`, `{,}`, `{"a":-}`} {
		s.Reset(p, r)
		s.Feed([]byte(bad))
		if !s.Broken() {
			t.Errorf("%q not broken", bad)
		}
	}
}

// TestTail: the end of a body whose start was never seen still gives the
// members that lie in it — the Go SDKs write "model" after the messages
// and "stream" last — and values inside containers the tail starts in,
// with their unseen keys as "?".
func TestTail(t *testing.T) {
	prompt := strings.Repeat(`lorem \"ipsum\" \\`, 120000) // ~2 MB
	body := []byte(`{"messages":[{"content":"` + prompt + `","role":"user"}],"model":"gpt-test","stream_options":{"include_usage":true},"stream":true}`)
	p := NewPaths().Value("model", 1).Value("stream", 2).Value("stream_options.include_usage", 3).Value("messages.[].role", 4)
	var s Scanner
	for _, n := range []int{80, 512, 1024} {
		r := &recorder{}
		if !Tail(&s, body[len(body)-n:], p, r) {
			t.Fatalf("tail of %d: no start found", n)
		}
		want := []rec{{path: "?.[].role", kind: String, value: "user"}, {path: "model", kind: String, value: "gpt-test"},
			{path: "stream_options.include_usage", kind: Bool, value: "true"}, {path: "stream", kind: Bool, value: "true"}}
		if n == 80 {
			want = want[1:] // the role is not in the last 80 bytes
		}
		if fmt.Sprint(r.got) != fmt.Sprint(want) {
			t.Errorf("tail of %d:\n got %v\nwant %v", n, r.got, want)
		}
	}

	resp := []byte(`{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-test-0613","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("word ", 5000) + `","refusal":null},"logprobs":null,"finish_reason":"length"}],` +
		`"usage":{"prompt_tokens":12,"completion_tokens":5000,"total_tokens":5012,"prompt_tokens_details":{"cached_tokens":3}},"system_fingerprint":"fp_1"}`)
	rp := NewPaths().Value("choices.[].finish_reason", 1).Value("usage.completion_tokens", 2).
		Value("usage.prompt_tokens_details.cached_tokens", 3).Value("system_fingerprint", 4).Value("id", 5)
	r := &recorder{}
	if !Tail(&s, resp[len(resp)-300:], rp, r) {
		t.Fatal("response tail: no start found")
	}
	want := "[?.[].finish_reason 1 \"length\" cut=false end=false usage.completion_tokens 2 \"5000\" cut=false end=false " +
		"usage.prompt_tokens_details.cached_tokens 2 \"3\" cut=false end=false system_fingerprint 1 \"fp_1\" cut=false end=false]"
	if fmt.Sprint(r.got) != want {
		t.Errorf("response tail:\n got %v\nwant %s", r.got, want)
	}

	for _, bad := range []string{"", "   ", `"a":1`, `abc"}`, `\"a\":1}`, `"x":1}}`, `,"a":[1}`} {
		if Tail(&s, []byte(bad), p, &recorder{}) {
			t.Errorf("Tail(%q) claimed a start", bad)
		}
	}
}

// TestTailWhole: a tail that holds the whole document reads it as Feed
// does.
func TestTailWhole(t *testing.T) {
	doc := []byte(chatRequest)
	want, paths, _ := expected(t, doc, false)
	p := watchAll(paths, false)
	var s Scanner
	r := &recorder{}
	if !Tail(&s, doc, p, r) {
		t.Fatal("no start")
	}
	compare(t, doc, r.got, want)
}

func BenchmarkSkip2MB(b *testing.B) {
	prompt := strings.Repeat(`lorem ipsum dolor sit amet, \"quoted\" and more `, 45000)
	body := []byte(`{"messages":[{"content":"` + prompt + `","role":"user"}],"model":"gpt-test","stream":true}`)
	p := NewPaths().Value("model", 1).Value("stream", 2)
	r := &recorder{}
	var s Scanner
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r.got = r.got[:0]
		s.Reset(p, r)
		for i := 0; i < len(body); i += 4096 {
			s.Feed(body[i:min(i+4096, len(body))])
		}
	}
}

func randomSplits(rng *rand.Rand, n int) []int {
	k := rng.IntN(4)
	out := make([]int, 0, k)
	at := 0
	for range k {
		if at >= n {
			break
		}
		at += rng.IntN(n-at) + 1
		out = append(out, at)
	}
	return out
}
