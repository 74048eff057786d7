package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// genaiCase is one batch of calls a GenAI e2e test makes through
// tests/genaiapp's /call handler, and what its span must say.
type genaiCase struct {
	name  string
	batch url.Values
	// op is gen_ai.operation.name.
	op string
	// errType: the server answers an error object, whose type is the
	// span's error.type.
	errType bool
	// cut: the server cut the stream; the span ends with the connection.
	cut bool
	// h2: the call must have gone over HTTP/2.
	h2 bool
}

// callGenAIApp asks the Go driver service at addr to make the calls in q
// from its handler, and returns them as it measured them.
func callGenAIApp(t *testing.T, addr string, q url.Values) []modelspec.Call {
	t.Helper()
	c := &http.Client{Timeout: testenv.Timeout(t, 60*time.Second)}
	resp, err := c.Get("http://" + addr + "/call?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	calls, err := modelspec.ReadCalls(resp.Body)
	if err != nil || len(calls) == 0 {
		t.Fatalf("/call?%s: %d calls, %v", q.Encode(), len(calls), err)
	}
	return calls
}

// TestGoGenAIClient traces a Go service whose handlers call a model server
// over plain HTTP (HTTP/1.1) with the official SDKs (openai-go v3,
// anthropic-sdk-go) and with net/http (Ollama's API). Every call must be
// exactly one CLIENT span, in the JSON output and in Jaeger, named "{operation} {model}", child of the server
// span of the request that made it, with the model, tokens, finish reason
// and error type the server sent (modelspec.Exchange), and its start, end
// and time to first chunk within the times the client measured: a
// stream's span ends with its last event, not when its head arrived. A
// stream the server cuts is a stream_cut error; a 2 MB prompt, which
// openai-go writes before the model, still gives the model.
func TestGoGenAIClient(t *testing.T) {
	testenv.RequireRoot(t)
	ms := testenv.StartModelServer(t)
	q := genaiQuery
	testGoGenAI(t, jaeger.Start(t), ms, ms.URL(), nil, []genaiCase{
		{name: "chat stream usage", batch: q("api", modelspec.OpenAIChat, "stream", "1", "include_usage", "1", "model", "gpt-test@ttft=80,gap=10,chunks=5"), op: "chat"},
		{name: "chat stream", batch: q("api", modelspec.OpenAIChat, "stream", "1", "model", "gpt-test@ttft=30,gap=5"), op: "chat"},
		{name: "chat", batch: q("api", modelspec.OpenAIChat, "n", "2", "model", "gpt-test@ttft=20"), op: "chat"},
		{name: "completions", batch: q("api", modelspec.OpenAICompletions, "model", "gpt-instruct"), op: "text_completion"},
		{name: "embeddings", batch: q("api", modelspec.OpenAIEmbeddings, "model", "text-embedding-test", "inputs", "3"), op: "embeddings"},
		{name: "responses stream", batch: q("api", modelspec.OpenAIResponses, "stream", "1", "model", "gpt-resp@ttft=30,gap=5"), op: "chat"},
		{name: "anthropic stream", batch: q("api", modelspec.AnthropicMessages, "stream", "1", "model", "claude-test@ttft=30,gap=5"), op: "chat"},
		{name: "anthropic", batch: q("api", modelspec.AnthropicMessages, "model", "claude-test"), op: "chat"},
		{name: "ollama chat", batch: q("api", modelspec.OllamaChat, "stream", "1", "model", "llama-test@ttft=30,gap=5"), op: "chat"},
		{name: "ollama generate", batch: q("api", modelspec.OllamaGenerate, "model", "llama-test"), op: "text_completion"},
		{name: "error", batch: q("api", modelspec.OpenAIChat, "model", "gpt-test@status=429"), op: "chat", errType: true},
		{name: "anthropic error", batch: q("api", modelspec.AnthropicMessages, "model", "claude-test@status=529"), op: "chat", errType: true},
		{name: "cut", batch: q("api", modelspec.OpenAIChat, "stream", "1", "model", "gpt-test@ttft=20,gap=5,chunks=6,cut=3"), op: "chat", cut: true},
		{name: "big prompt", batch: q("api", modelspec.OpenAIChat, "prompt_bytes", strconv.Itoa(2<<20), "model", "gpt-test"), op: "chat"},
	})
}

// TestGoGenAIClientTLSHTTP1: the same service over HTTPS with HTTP/2 off
// (GODEBUG=http2client=0), so that the SDKs speak HTTP/1.1 over TLS: the
// plaintext the connection's reads and writes carry gives the same spans.
// (Go's default HTTPS is HTTP/2: TestGoGenAIClientTLSHTTP2.)
func TestGoGenAIClientTLSHTTP1(t *testing.T) {
	testenv.RequireRoot(t)
	ms := testenv.StartModelServer(t)
	q := genaiQuery
	testGoGenAI(t, nil, ms, ms.TLSURL(), append(ms.TrustEnv(), "GODEBUG=http2client=0"), []genaiCase{
		{name: "chat stream usage", batch: q("api", modelspec.OpenAIChat, "n", "2", "stream", "1", "include_usage", "1", "model", "gpt-test@ttft=60,gap=10,chunks=5"), op: "chat"},
		{name: "anthropic", batch: q("api", modelspec.AnthropicMessages, "model", "claude-test"), op: "chat"},
	})
}

// TestGoGenAIClientTLSHTTP2: the same service over HTTPS as Go makes it by
// default, HTTP/2 (the server checks it saw HTTP/2.0): the frames of the
// connection's TLS plaintext, joined to the round trip by its stream, give
// the same spans as over HTTP/1.1, streams ending with their last event, a
// cut stream (RST_STREAM) as stream_cut, and the model of a 2 MB prompt
// from the last bytes of its request.
func TestGoGenAIClientTLSHTTP2(t *testing.T) {
	testenv.RequireRoot(t)
	ms := testenv.StartModelServer(t)
	q := genaiQuery
	testGoGenAI(t, nil, ms, ms.TLSURL(), ms.TrustEnv(), []genaiCase{
		{name: "chat stream usage", batch: q("api", modelspec.OpenAIChat, "n", "2", "stream", "1", "include_usage", "1", "model", "gpt-test@ttft=60,gap=10,chunks=5"), op: "chat", h2: true},
		{name: "chat", batch: q("api", modelspec.OpenAIChat, "model", "gpt-test@ttft=20"), op: "chat", h2: true},
		{name: "anthropic stream", batch: q("api", modelspec.AnthropicMessages, "stream", "1", "model", "claude-test@ttft=30,gap=5"), op: "chat", h2: true},
		{name: "error", batch: q("api", modelspec.OpenAIChat, "model", "gpt-test@status=429"), op: "chat", errType: true, h2: true},
		{name: "cut", batch: q("api", modelspec.OpenAIChat, "stream", "1", "model", "gpt-test@ttft=20,gap=5,chunks=6,cut=3"), op: "chat", cut: true, h2: true},
		{name: "big prompt", batch: q("api", modelspec.OpenAIChat, "prompt_bytes", strconv.Itoa(2<<20), "model", "gpt-test"), op: "chat", h2: true},
	})
}

func genaiQuery(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// testGoGenAI runs the cases through a traced tests/genaiapp service
// calling the model server at base, and checks each call's span.
// With j set, the spans are checked in Jaeger too.
func testGoGenAI(t *testing.T, j *jaeger.Jaeger, ms *testenv.ModelServer, base string, env []string, cases []genaiCase) {
	t.Helper()
	zt := testenv.BuildZerotrace(t)
	app, addr := testenv.StartGenAIApp(t, base, env...)
	service := fmt.Sprintf("e2e-gogenai-%d", time.Now().UnixNano())
	args := []string{"attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "json", "--service-name", service}
	if j != nil {
		args = append(args, "--otlp-endpoint", j.OTLPEndpoint())
	}
	a := startAgent(t, zt, nil, args...)
	if !strings.Contains(a.Stderr(), "net/http client") {
		t.Fatalf("the client probe was not attached:\n%s", a.Stderr())
	}
	var all []genaiMade
	for _, c := range cases {
		for _, call := range callGenAIApp(t, addr, c.batch) {
			if !c.errType && !c.cut && (call.Error != "" || call.Status != 200) {
				t.Fatalf("%s: the call failed: %+v", c.name, call)
			}
			x := ms.Exchange(t, call)
			if c.h2 && x.Proto != "HTTP/2.0" {
				t.Fatalf("%s: the call went over %s, not HTTP/2", c.name, x.Proto)
			}
			all = append(all, genaiMade{c, call, x})
		}
	}
	if !alive(app.Process.Pid) {
		t.Fatal("the traced service died")
	}
	a.stop()

	checkGenAISpans(t, "json", fromJSON(a.jsonSpans()), all)
	if j != nil {
		ctx, cancel := context.WithTimeout(t.Context(), testenv.Timeout(t, 60*time.Second))
		defer cancel()
		// A server span per /call request, a client span per call.
		spans, err := j.WaitForSpans(ctx, service, len(cases)+len(all), 30*time.Second)
		if err != nil {
			t.Fatalf("reading spans back from jaeger: %v", err)
		}
		checkGenAISpans(t, "jaeger", fromJaeger(spans), all)
	}
}

// genaiMade is one call a test made: its case, what the client measured,
// and what the server sent.
type genaiMade struct {
	c    genaiCase
	call modelspec.Call
	x    modelspec.Exchange
}

// checkGenAISpans checks the spans an output (where) holds for the calls
// made.
func checkGenAISpans(t *testing.T, where string, spans []observed, all []genaiMade) {
	t.Helper()
	servers := map[string]observed{}
	var clients []observed
	for _, s := range spans {
		switch {
		case s.Kind == "server" && s.Attrs["url.path"] == "/call":
			servers[s.SpanID] = s
		case s.Kind == "client":
			clients = append(clients, s)
		}
	}
	if len(clients) != len(all) {
		t.Errorf("%s: %d client spans for %d calls", where, len(clients), len(all))
	}
	for _, m := range all {
		var found []observed
		for _, s := range clients {
			if strings.HasSuffix(s.Attrs["url.full"], m.x.Path) &&
				!s.Start.Before(m.call.Times.Start) && s.Start.Before(m.call.Times.End) &&
				!s.End.After(m.call.Times.End.Add(2*time.Millisecond)) {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %s: %d client spans within the call's times (%v to %v), want 1", where, m.c.name, len(found), m.call.Times.Start, m.call.Times.End)
			for _, s := range found {
				t.Logf("%s %v to %v %v", s.Name, s.Start, s.End, s.Attrs)
			}
			continue
		}
		s := found[0]
		if want := m.c.op + " " + m.x.Request.Model; s.Name != want {
			t.Errorf("%s: span name %q, want %q", m.c.name, s.Name, want)
		}
		if _, ok := servers[s.ParentSpanID]; !ok {
			t.Errorf("%s: the span's parent is not the /call request's server span", m.c.name)
		}
		check := map[string]string{
			"gen_ai.operation.name": m.c.op,
			"gen_ai.request.model":  m.x.Request.Model,
		}
		r := m.x.Response
		if r.Model != "" {
			check["gen_ai.response.model"] = r.Model
		}
		if r.ID != "" {
			check["gen_ai.response.id"] = r.ID
		}
		if u := r.Usage; u != nil && !m.c.cut {
			check["gen_ai.usage.input_tokens"] = strconv.Itoa(u.Input + u.Cached*map[bool]int{true: 1}[m.x.API == modelspec.AnthropicMessages] + u.CacheWrite*map[bool]int{true: 1}[m.x.API == modelspec.AnthropicMessages])
			if u.Output > 0 {
				check["gen_ai.usage.output_tokens"] = strconv.Itoa(u.Output)
			}
		}
		if len(r.FinishReasons) == 1 && m.x.API != modelspec.OpenAIResponses {
			check["gen_ai.response.finish_reasons"] = "[" + r.FinishReasons[0] + "]"
		}
		switch {
		case m.c.errType:
			check["error.type"] = r.ErrorType
		case m.c.cut:
			check["error.type"] = "stream_cut"
		}
		for k, v := range check {
			// Jaeger shows a string array as JSON, the JSON output
			// without quotes.
			if strings.ReplaceAll(s.Attrs[k], `"`, "") != v {
				t.Errorf("%s: %s: %s = %q, want %q\nattrs %v", where, m.c.name, k, s.Attrs[k], v, s.Attrs)
			}
		}
		// The span lasts as long as the call: it ends after the read that
		// brought the last event, a little before the library handed it
		// over, not at the response head.
		ct := m.call.Times
		if s.End.Before(ct.End.Add(-10 * time.Millisecond)) {
			t.Errorf("%s: span ends at %v, the call at %v (head %v)", m.c.name, s.End.Sub(ct.Start), ct.End.Sub(ct.Start), ct.Head.Sub(ct.Start))
		}
		if ttfc := s.Attrs["gen_ai.response.time_to_first_chunk"]; ttfc != "" && !ct.FirstChunk.IsZero() {
			sec, _ := strconv.ParseFloat(ttfc, 64)
			first := s.Start.Add(time.Duration(sec * float64(time.Second)))
			if first.After(ct.FirstChunk) || first.Before(ct.Start) {
				t.Errorf("%s: first chunk at %v, the client got it at %v", m.c.name, first.Sub(ct.Start), ct.FirstChunk.Sub(ct.Start))
			}
		}
	}
}

// TestGoGenAIClientStopped: a Go client that closes a streamed answer after
// three chunks (a user stopping the answer) makes net/http close the
// connection with the stream still coming. The call's span must go out
// then, while the agent runs (not at the idle sweep ten minutes later, nor
// only when the agent detaches and ends what is open), ending when the
// client stopped, its stream marked cut. The same over HTTPS with HTTP/2.
func TestGoGenAIClientStopped(t *testing.T) {
	testenv.RequireRoot(t)
	ms := testenv.StartModelServer(t)
	t.Run("http1", func(t *testing.T) { testGoGenAIStopped(t, ms, ms.URL()) })
	// Over HTTP/2 the stream is reset (RST_STREAM), the connection kept.
	t.Run("http2", func(t *testing.T) { testGoGenAIStopped(t, ms, ms.TLSURL(), ms.TrustEnv()...) })
}

func testGoGenAIStopped(t *testing.T, ms *testenv.ModelServer, base string, env ...string) {
	zt := testenv.BuildZerotrace(t)
	app, addr := testenv.StartGenAIApp(t, base, env...)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "json")
	const model = "gpt-test@ttft=20,gap=50,chunks=60"
	calls := callGenAIApp(t, addr, genaiQuery("api", modelspec.OpenAIChat, "stream", "1", "stop_after", "3", "model", model))
	call := calls[0]
	if call.Chunks != 3 || call.Error != "" {
		t.Fatalf("the client did not stop after 3 chunks: %+v", call)
	}
	if x := ms.Exchange(t, call); strings.HasPrefix(base, "https:") != (x.Proto == "HTTP/2.0") {
		t.Fatalf("the call to %s went over %s", base, x.Proto)
	}
	var found []observed
	deadline := time.Now().Add(testenv.Timeout(t, 10*time.Second))
	for len(found) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		for _, s := range fromJSON(a.jsonSpans()) {
			if s.Kind == "client" && strings.HasSuffix(s.Attrs["url.full"], "/v1/chat/completions") {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d client spans while the agent runs, %v after the client stopped the stream; want 1", len(found), testenv.Timeout(t, 10*time.Second))
	}
	s := found[0]
	ct := call.Times
	t.Logf("span %q %v to %v after the call's start, the client stopped at %v; attributes %v", s.Name, s.Start.Sub(ct.Start), s.End.Sub(ct.Start), ct.End.Sub(ct.Start), s.Attrs)
	if s.Name != "chat "+model || s.Attrs["error.type"] != "stream_cut" {
		t.Errorf("span %q, error.type %q; want %q, stream_cut", s.Name, s.Attrs["error.type"], "chat "+model)
	}
	// It ends when the connection closed: after the last chunk the client
	// read, as the client stopped (net/http closes it on another
	// goroutine, a moment later), long before the stream would have ended.
	if s.End.Before(ct.FirstChunk) || s.End.After(ct.End.Add(testenv.Timeout(t, 200*time.Millisecond))) {
		t.Errorf("span ends at %v, the client stopped at %v", s.End.Sub(ct.Start), ct.End.Sub(ct.Start))
	}
	a.stop()
	if !alive(app.Process.Pid) {
		t.Fatal("the traced service died")
	}
}
