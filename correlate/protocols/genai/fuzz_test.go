package genai

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// FuzzExchange: any request and response bodies, of any API, read without
// panic, and give the same result whatever pieces they come in (all at one
// time) — the state kept across pieces is exactly the state a whole body
// leaves.
func FuzzExchange(f *testing.F) {
	for _, s := range samples {
		f.Add(uint8(s.api), []byte(s.req), s.ctype, []byte(s.wholeBody()), uint64(len(s.req)), true)
	}
	f.Add(uint8(model.GenAIChatCompletions), []byte(`{"model":"m"}`), "", []byte("data: [DONE]\r\n\r\n"), uint64(3), false)
	f.Add(uint8(model.GenAIOllamaChat), []byte(`{"model":"m"}`), "", []byte("{\"done\":true}"), uint64(9), true)
	f.Fuzz(func(t *testing.T, api uint8, req []byte, ctype string, body []byte, seed uint64, content bool) {
		a := model.GenAIAPI(api % uint8(len(specs)))
		opts := Options{Content: content, MaxContent: 64}
		read := func(rng *rand.Rand) (*model.GenAI, bool) {
			x := NewExchange(a, opts)
			feedSplit(rng, req, x.RequestBody)
			x.ResponseHead(200, ctype, "")
			feedSplit(rng, body, func(b []byte) { x.ResponseBody(t0, b) })
			if seed%5 == 0 {
				x.ResponseTail(body[len(body)/2:])
			}
			g := model.NewGenAI()
			ok := x.Finish(g, model.GenAIEndClosed)
			return g, ok
		}
		want, wok := read(nil)
		got, ok := read(rand.New(rand.NewPCG(seed, 5)))
		if ok != wok || !reflect.DeepEqual(got, want) {
			t.Fatalf("split changed the result:\n got %v %+v\nwant %v %+v", ok, got, wok, want)
		}
		if len(got.Input) > MaxMessages {
			t.Fatalf("%d messages", len(got.Input))
		}
		for _, m := range got.Input {
			if len(m.Text) > 64 {
				t.Fatalf("a message of %d bytes", len(m.Text))
			}
		}
		if !got.FirstChunk.IsZero() && !got.FirstChunk.Equal(t0) || got.LastChunk.After(t0.Add(time.Nanosecond)) {
			t.Fatalf("times %v %v", got.FirstChunk, got.LastChunk)
		}
	})
}
