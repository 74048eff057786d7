package jscan

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		chatRequest,
		`{"a":[1,2.5e-3,true,false,null,"x\u0041\ud800y"],"b":{"c":{}},"d":[]}`,
		"{\"done\":false}\n{\"done\":true,\"eval_count\":5}\n",
		`[{"choices":[{"delta":{"content":"hi"}}]}]`,
		`{"k":"` + strings.Repeat("é", 200) + `"}`,
		`{"` + strings.Repeat("k", 70) + `":1,"x":{"y":` + strings.Repeat("[", 30) + strings.Repeat("]", 30) + `}}`,
		`{"a":"\ud83d\ude00\udc00\ud800\ud800"}`,
		`{"":["","0"],"0":[[]]}`, // Tail: "?" standing for an empty key
		`<html>`, `{"a":01}`, `{"a" "b"}`,
	} {
		f.Add([]byte(s), uint64(7))
	}
}

// FuzzScanner: on any input and any split the scanner neither panics nor
// grows; on a valid document it reports what encoding/json reads, whatever
// the split, plain and as text.
func FuzzScanner(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, doc []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 1))
		splits := randomSplits(rng, len(doc))
		if !json.Valid(doc) || !utf8.Valid(doc) || !bytes.ContainsAny(doc, "{[") {
			all := NewPaths().Value("a", 1).Text("b", 2).Value("a.[]", 3)
			s, _ := scanSplit(doc, all, splits)
			_ = s.InDoc()
			return
		}
		for _, texts := range []bool{false, true} {
			want, paths, weird := expected(t, doc, texts)
			if weird {
				return
			}
			s, r := scanSplit(doc, watchAll(paths, texts), splits)
			compare(t, doc, r.got, want)
			if s.Broken() || s.InDoc() {
				t.Fatalf("%q: broken %v, in a document %v", doc, s.Broken(), s.InDoc())
			}
		}
	})
}

// FuzzTail: any tail of a valid object reads without panic, and whatever it
// reports is in the document at a path its "?" keys match, with the same
// value ("?" may stand for a key no path watches: an empty or long one).
func FuzzTail(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, doc []byte, seed uint64) {
		var s Scanner
		cut := 0
		if len(doc) > 0 {
			cut = int(seed % uint64(len(doc)))
		}
		if !json.Valid(doc) || !utf8.Valid(doc) || !bytes.HasPrefix(bytes.TrimLeft(doc, " \t\r\n"), []byte("{")) {
			Tail(&s, doc[cut:], NewPaths().Value("a", 1), &recorder{})
			return
		}
		_, paths, weird := expected(t, doc, false)
		if weird {
			return
		}
		want, _, _ := walkDoc(t, doc, false, true)
		r := &recorder{}
		Tail(&s, doc[cut:], watchAll(paths, false), r)
		for _, g := range r.got {
			found := false
			for _, w := range want {
				if w.kind == g.kind && w.end == g.end && (w.value == g.value || g.cut) &&
					wildMatch([]byte(g.path), bytes.Split([]byte(w.path), []byte("."))) {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("%q cut at %d: reported %v, not in the document %v", doc, cut, g, want)
			}
		}
	})
}
