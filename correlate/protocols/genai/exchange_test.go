package genai

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

var t0 = time.Unix(1_800_000_000, 0)

// at is when a stream's event i is sent.
func at(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Millisecond) }

// feedSplit feeds p in pieces cut at random places.
func feedSplit(rng *rand.Rand, p []byte, feed func([]byte)) {
	for len(p) > 0 {
		n := len(p)
		if rng != nil && rng.IntN(3) > 0 {
			n = rng.IntN(len(p)) + 1
		}
		feed(p[:n])
		p = p[n:]
	}
}

// run reads a sample through an Exchange, every piece cut at random
// places (rng nil: whole), and returns what Finish gave.
func run(t testing.TB, s *sample, rng *rand.Rand, opts Options) (*model.GenAI, bool) {
	x := NewExchange(s.api, opts)
	feedSplit(rng, []byte(s.req), x.RequestBody)
	x.ResponseHead(s.status, s.ctype, "")
	pieces := s.events
	if pieces == nil {
		pieces = []string{s.body}
	}
	for i, piece := range pieces {
		feedSplit(rng, []byte(piece), func(b []byte) { x.ResponseBody(at(i), b) })
	}
	g := model.NewGenAI()
	ok := x.Finish(g, model.GenAIEndFraming)
	return g, ok
}

func check(t *testing.T, s *sample, g *model.GenAI) {
	t.Helper()
	w, found := wants[s.name]
	if !found {
		t.Fatalf("%s: no want", s.name)
	}
	tm := func(i int) time.Time {
		if i < 0 {
			return time.Time{}
		}
		return at(i)
	}
	got := want{reqModel: g.RequestModel, respModel: g.ResponseModel, id: g.ResponseID, stream: g.Stream, maxTokens: g.MaxTokens,
		finish: strings.Join(g.FinishReasons[:g.NFinish], ","), in: g.Usage.Input, out: g.Usage.Output, cacheRead: g.Usage.CacheRead,
		cacheCreate: g.Usage.CacheCreation, reasoning: g.Usage.Reasoning, estimated: g.Usage.Estimated,
		chunks: g.Chunks, content: g.ContentChunks, firstChunk: w.firstChunk, firstToken: w.firstToken, errType: g.ErrorType, end: g.End}
	if got != w {
		t.Errorf("%s:\n got %+v\nwant %+v", s.name, got, w)
	}
	if !g.FirstChunk.Equal(tm(w.firstChunk)) || !g.FirstToken.Equal(tm(w.firstToken)) {
		t.Errorf("%s: first chunk %v token %v, want events %d %d", s.name, g.FirstChunk.Sub(t0), g.FirstToken.Sub(t0), w.firstChunk, w.firstToken)
	}
	if w.chunks > 0 && !g.LastChunk.Equal(at(lastEvent(s))) {
		t.Errorf("%s: last chunk %v", s.name, g.LastChunk.Sub(t0))
	}
	if g.Operation != Operation(s.api) || g.Provider != Provider(s.api) || g.API != s.api {
		t.Errorf("%s: operation %q provider %q api %v", s.name, g.Operation, g.Provider, g.API)
	}
	if len(g.Input) != 0 || len(g.Output) != 0 || g.SystemInstructions != "" {
		t.Errorf("%s: content kept without being asked: %+v %+v", s.name, g.Input, g.Output)
	}
}

// lastEvent is the index of a stream's last event that is a chunk (not
// [DONE], not a ping).
func lastEvent(s *sample) int {
	for i := len(s.events) - 1; i >= 0; i-- {
		if !strings.Contains(s.events[i], "[DONE]") && !strings.Contains(s.events[i], "ping") {
			return i
		}
	}
	return -1
}

func TestSamples(t *testing.T) {
	for i := range samples {
		s := &samples[i]
		g, ok := run(t, s, nil, Options{})
		if !ok {
			t.Errorf("%s: not read as a call", s.name)
			continue
		}
		check(t, s, g)
	}
}

// TestSamplesAnySplit: the same result whatever pieces the bodies come in,
// with LF or CRLF line ends.
func TestSamplesAnySplit(t *testing.T) {
	for i := range samples {
		s := samples[i]
		want, _ := run(t, &s, nil, Options{Content: true})
		for seed := range uint64(200) {
			rng := rand.New(rand.NewPCG(seed, 3))
			g, ok := run(t, &s, rng, Options{Content: true})
			if !ok || !reflect.DeepEqual(g, want) {
				t.Fatalf("%s seed %d:\n got %+v\nwant %+v", s.name, seed, g, want)
			}
		}
		if s.events != nil && !s.ndjsonSample() {
			crlf := s
			crlf.events = nil
			for _, e := range s.events {
				crlf.events = append(crlf.events, strings.ReplaceAll(e, "\n", "\r\n"))
			}
			if g, _ := run(t, &crlf, rand.New(rand.NewPCG(1, 1)), Options{Content: true}); !reflect.DeepEqual(g, want) {
				t.Errorf("%s with CRLF:\n got %+v\nwant %+v", s.name, g, want)
			}
		}
	}
}

func (s *sample) ndjsonSample() bool { return strings.Contains(s.ctype, "ndjson") }

// TestRequestParams: every request parameter the conventions name.
func TestRequestParams(t *testing.T) {
	g, _ := run(t, &samples[0], nil, Options{})
	if g.Temperature != 0.2 || g.TopP != 0.9 || g.PresencePenalty != 0.5 || g.FrequencyPenalty != 0 || g.Seed != -7 ||
		g.ChoiceCount != 1 || g.Params != model.GenAITemperature|model.GenAITopP|model.GenAIFrequencyPenalty|model.GenAIPresencePenalty {
		t.Errorf("sampling: %+v", g)
	}
	if g.NStop != 2 || g.Stop[0] != "END" || g.Stop[1] != "\n\n" || g.OutputType != "json" || g.RequestServiceTier != "auto" ||
		g.ServiceTier != "default" || g.SystemFingerprint != "fp_44709d6fcb" {
		t.Errorf("stop %q output %q tiers %q %q fp %q", g.Stop[:g.NStop], g.OutputType, g.RequestServiceTier, g.ServiceTier, g.SystemFingerprint)
	}
	byName := map[string]*sample{}
	for i := range samples {
		byName[samples[i].name] = &samples[i]
	}
	if g, _ := run(t, byName["anthropic"], nil, Options{}); g.TopK != 40 || g.Params != model.GenAITemperature|model.GenAITopK ||
		g.NStop != 1 || g.Stop[0] != "STOP" {
		t.Errorf("anthropic: %+v", g)
	}
	if g, _ := run(t, byName["ollama-chat-stream"], nil, Options{}); g.TopK != 20 || g.Temperature != 0.1 || g.Seed != 42 || g.NStop != 1 {
		t.Errorf("ollama options: %+v", g)
	}
	if g, _ := run(t, byName["ollama-generate"], nil, Options{}); g.OutputType != "json" || g.Stream {
		t.Errorf("ollama generate: %+v", g)
	}
	if g, _ := run(t, byName["embeddings"], nil, Options{}); g.Dimensions != 4 || g.EncodingFormat != "float" {
		t.Errorf("embeddings: %+v", g)
	}
	if g, _ := run(t, byName["chat-429"], nil, Options{}); g.ErrorMessage != "Rate limit reached for gpt-4o-mini" {
		t.Errorf("error message %q", g.ErrorMessage)
	}
	if g, _ := run(t, byName["ollama-404"], nil, Options{}); g.ErrorMessage != `model "nope" not found, try pulling it first` {
		t.Errorf("ollama error message %q", g.ErrorMessage)
	}
}

// TestContent: prompts and answers only when asked for, bounded.
func TestContent(t *testing.T) {
	g, _ := run(t, &samples[0], nil, Options{Content: true})
	in := fmt.Sprint(g.Input)
	if in != "[{system You are terse. } {user Say hi to zt-canary-1 }]" {
		t.Errorf("input %s", in)
	}
	if out := fmt.Sprint(g.Output); out != "[{assistant Hi zt-canary-2!Hello stop}]" {
		t.Errorf("output %s", out)
	}
	for _, c := range []struct {
		name, in, sys, out string
	}{
		{"chat-stream-usage", "[{user hi }]", "", "[{assistant Hello é stop}]"},
		{"responses-stream", "[{user Tell me a joke }]", "Be brief", "[{assistant Why not? stop}]"},
		{"anthropic", "[{user Hello zt-canary-4 }]", "Be kind", "[{assistant Hi there end_turn}]"},
		{"anthropic-stream", "[{user Hello }]", "", "[{assistant Hi! end_turn}]"},
		{"ollama-chat-stream", "[{user why is the sky blue? }]", "", "[{assistant The sky stop}]"},
		{"completions", "[{user Once upon a time }]", "", "[{assistant  there was length}]"},
		{"embeddings", "[]", "", "[]"},
	} {
		var s *sample
		for i := range samples {
			if samples[i].name == c.name {
				s = &samples[i]
			}
		}
		g, _ := run(t, s, nil, Options{Content: true})
		if fmt.Sprint(g.Input) != c.in || g.SystemInstructions != c.sys || fmt.Sprint(g.Output) != c.out {
			t.Errorf("%s: input %v system %q output %v", c.name, g.Input, g.SystemInstructions, g.Output)
		}
	}

	long := `{"messages":[` + strings.Repeat(`{"role":"user","content":"`+strings.Repeat("x", 100)+`"},`, 40) +
		`{"role":"user","content":"` + strings.Repeat("y", 10000) + `"}],"model":"m"}`
	x := NewExchange(model.GenAIChatCompletions, Options{Content: true, MaxContent: 50})
	x.RequestBody([]byte(long))
	g = model.NewGenAI()
	x.Finish(g, model.GenAIEndUnknown)
	if len(g.Input) != MaxMessages || len(g.Input[0].Text) != 50 || !g.ContentCut || g.RequestModel != "m" {
		t.Errorf("bounds: %d messages, first %d bytes, cut %v", len(g.Input), len(g.Input[0].Text), g.ContentCut)
	}
}

// TestCutStreams: a stream that stops short is an error unless the capture
// lost its end.
func TestCutStreams(t *testing.T) {
	s := samples[1] // chat-stream-usage
	s.events = s.events[:3]
	x := NewExchange(s.api, Options{})
	x.RequestBody([]byte(s.req))
	x.ResponseHead(200, s.ctype, "")
	for i, e := range s.events {
		if x.ResponseBody(at(i), []byte(e)) {
			t.Fatal("done before the end")
		}
	}
	g := model.NewGenAI()
	x.Finish(g, model.GenAIEndClosed)
	if g.ErrorType != "stream_cut" || g.End != model.GenAIEndClosed || g.Usage.Output != 2 || !g.Usage.Estimated {
		t.Errorf("cut stream: %+v", g)
	}
	// The same stream, its end unseen by the capture: not an error.
	x.Reset(s.api, Options{})
	x.ResponseHead(200, s.ctype, "")
	x.ResponseBody(at(0), []byte(s.events[0]))
	g = model.NewGenAI()
	x.Finish(g, model.GenAIEndUnknown)
	if g.ErrorType != "" || g.End != model.GenAIEndUnknown {
		t.Errorf("unseen end: %+v", g)
	}
	// A mid-event cut: the part event is no chunk.
	x.Reset(s.api, Options{})
	x.ResponseHead(200, s.ctype, "")
	x.ResponseBody(at(0), []byte(s.events[0]+s.events[1][:40]))
	g = model.NewGenAI()
	if !x.Finish(g, model.GenAIEndClosed) || g.Chunks != 1 || g.ErrorType != "stream_cut" {
		t.Errorf("mid-event cut: ok chunks %d %q", g.Chunks, g.ErrorType)
	}
}

// TestNotACall: bodies that are not what the API sends make no GenAI
// exchange.
func TestNotACall(t *testing.T) {
	for _, c := range []struct {
		name, req, ctype, body string
		enc                    string
	}{
		{"form request", "a=1&b=2", "application/json", `{"id":"x"}`, ""},
		{"html answer", `{"model":"m"}`, "text/html", "<html>oops</html>", ""},
		{"bad json", `{"model":"m"}`, "application/json", `{"id":"x",}`, ""},
		{"bad events", `{"model":"m","stream":true}`, "text/event-stream", "data: {oops\n\ndata: <x>\n\n", ""},
	} {
		x := NewExchange(model.GenAIChatCompletions, Options{})
		x.RequestBody([]byte(c.req))
		x.ResponseHead(200, c.ctype, c.enc)
		x.ResponseBody(t0, []byte(c.body))
		if x.Finish(model.NewGenAI(), model.GenAIEndFraming) {
			t.Errorf("%s: read as a call", c.name)
		}
	}
	// A compressed answer is a call whose response was not read.
	x := NewExchange(model.GenAIChatCompletions, Options{})
	x.RequestBody([]byte(`{"model":"m"}`))
	x.ResponseHead(200, "application/json", "gzip")
	x.ResponseBody(t0, []byte{0x1f, 0x8b, 8, 0})
	g := model.NewGenAI()
	if !x.Finish(g, model.GenAIEndFraming) || g.Cut != model.GenAIEncoded || g.RequestModel != "m" {
		t.Errorf("gzip: %+v", g)
	}
}

// TestHeadAndTail: a 2 MB prompt captured as its first 16 KiB and last
// 1 KiB still gives the model and the stream flag the Go SDK writes after
// it; a long answer's tail gives its finish reason and usage.
func TestHeadAndTail(t *testing.T) {
	prompt := strings.Repeat(`lorem \"ipsum\" dolor `, 100000)
	req := []byte(`{"messages":[{"content":"` + prompt + `","role":"user"}],"model":"gpt-4o-mini","max_completion_tokens":5,` +
		`"stream_options":{"include_usage":true},"stream":true}`)
	x := NewExchange(model.GenAIChatCompletions, Options{Content: true})
	x.RequestBody(req[:16<<10])
	x.RequestTail(req[len(req)-1024:])
	x.ResponseHead(200, "text/event-stream", "")
	for i, e := range chatStreamEvents {
		x.ResponseBody(at(i), []byte(e))
	}
	g := model.NewGenAI()
	x.Finish(g, model.GenAIEndFraming)
	if g.RequestModel != "gpt-4o-mini" || !g.Stream || g.MaxTokens != 5 || g.Cut != model.GenAICutRequest ||
		g.Usage.Output != 2 || len(g.Input) != 1 || len(g.Input[0].Text) != DefaultMaxContent {
		t.Errorf("request head+tail: %+v", g)
	}

	resp := []byte(`{"id":"chatcmpl-L","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("word ", 100000) + `","refusal":null},"logprobs":null,"finish_reason":"length"}],` +
		`"usage":{"prompt_tokens":12,"completion_tokens":100000,"total_tokens":100012,"prompt_tokens_details":{"cached_tokens":3}},"system_fingerprint":"fp_1"}`)
	x.Reset(model.GenAIChatCompletions, Options{})
	x.RequestBody([]byte(`{"model":"gpt-4o-mini","messages":[]}`))
	x.ResponseHead(200, "application/json", "")
	if x.ResponseBody(t0, resp[:16<<10]) {
		t.Fatal("done at the head")
	}
	x.ResponseTail(resp[len(resp)-1024:])
	g = model.NewGenAI()
	x.Finish(g, model.GenAIEndFraming)
	if g.ResponseID != "chatcmpl-L" || g.NFinish != 1 || g.FinishReasons[0] != "length" || g.Usage.Output != 100000 ||
		g.Usage.CacheRead != 3 || g.End != model.GenAIEndDone || g.Cut != model.GenAICutResponse || g.SystemFingerprint != "fp_1" {
		t.Errorf("response head+tail: %+v", g)
	}

	// A stream whose middle was lost: the events after the gap still
	// give the usage.
	x.Reset(model.GenAIChatCompletions, Options{})
	x.ResponseHead(200, "text/event-stream", "")
	x.ResponseBody(at(0), []byte(chatStreamEvents[0]+chatStreamEvents[1]))
	all := strings.Join(chatStreamEvents, "")
	x.ResponseTail([]byte(all[len(all)-400:]))
	g = model.NewGenAI()
	x.Finish(g, model.GenAIEndFraming)
	if g.Usage.Input != 9 || g.Usage.Output != 2 || g.End != model.GenAIEndDone || g.Chunks != 2 || g.ErrorType != "" {
		t.Errorf("stream head+tail: %+v", g)
	}
}

func TestRecognize(t *testing.T) {
	for path, want := range map[string]model.GenAIAPI{
		"/v1/chat/completions":                      model.GenAIChatCompletions,
		"/openai/v1/chat/completions?api-version=1": model.GenAIChatCompletions,
		"/chat/completions":                         model.GenAIChatCompletions,
		"/v1/completions":                           model.GenAICompletions,
		"/v1/embeddings/":                           model.GenAIEmbeddings,
		"/v1/responses":                             model.GenAIResponses,
		"/v1/messages":                              model.GenAIMessages,
		"/api/chat":                                 model.GenAIOllamaChat,
		"/api/generate":                             model.GenAIOllamaGenerate,
		"/api/embed":                                model.GenAIOllamaEmbed,
		"/v1/chat":                                  model.GenAINone,
		"/api/chats":                                model.GenAINone,
		"/completions":                              model.GenAINone,
		"":                                          model.GenAINone,
		"/v1/models":                                model.GenAINone,
		"/v1/responses/resp_1/input_items":          model.GenAINone,
		"/proxy/v1/messages#frag":                   model.GenAIMessages,
		"/ollama/api/generate?keep_alive=5m":        model.GenAIOllamaGenerate,
		"/v1/chat/completions/chatcmpl-1/messages/x": model.GenAINone,
	} {
		got, ok := Recognize("POST", path)
		if got != want || ok != (want != model.GenAINone) {
			t.Errorf("%q: %v %v, want %v", path, got, ok, want)
		}
	}
	if _, ok := Recognize("GET", "/v1/chat/completions"); ok {
		t.Error("GET recognised")
	}
	r := NewRoutes()
	r.Add("/generate", model.GenAIOllamaGenerate)
	if a, ok := r.Recognize("POST", "/tgi/generate"); !ok || a != model.GenAIOllamaGenerate {
		t.Error("added route not recognised")
	}
}

func BenchmarkStream(b *testing.B) {
	s := &samples[1]
	body := []byte(s.wholeBody())
	req := []byte(s.req)
	x := NewExchange(s.api, Options{Strings: NewStrings()})
	g := model.NewGenAI()
	b.SetBytes(int64(len(body) + len(req)))
	b.ReportAllocs()
	for b.Loop() {
		x.Reset(s.api, x.opts)
		x.RequestBody(req)
		x.ResponseHead(200, s.ctype, "")
		x.ResponseBody(t0, body)
		x.Finish(g, model.GenAIEndFraming)
	}
}

func BenchmarkPrompt2MB(b *testing.B) {
	prompt := strings.Repeat(`lorem ipsum dolor sit amet, \"quoted\" and more `, 45000)
	req := []byte(`{"messages":[{"content":"` + prompt + `","role":"user"}],"model":"gpt-test","stream":true}`)
	x := NewExchange(model.GenAIChatCompletions, Options{Strings: NewStrings()})
	g := model.NewGenAI()
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		x.Reset(model.GenAIChatCompletions, x.opts)
		for i := 0; i < len(req); i += 4096 {
			x.RequestBody(req[i:min(i+4096, len(req))])
		}
		x.Finish(g, model.GenAIEndUnknown)
	}
}

// TestKernelPrefixes: every path the kernel's 16-byte check
// (bpf/syscalls/http.h, looks_like_genai) lets through at an API's usual
// place is one Recognize accepts, so that a server's body bytes are copied
// for each model call a deployment at the root serves.
func TestKernelPrefixes(t *testing.T) {
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
		"/v1/messages", "/api/chat", "/api/generate", "/api/embed"} {
		if _, ok := Recognize("POST", path); !ok {
			t.Errorf("%s: the kernel copies its body, Recognize does not take it", path)
		}
		if head := "POST " + path + " HTTP/1.1"; len(head) < 16 {
			t.Errorf("%s: shorter than the kernel's check", path)
		}
	}
}
