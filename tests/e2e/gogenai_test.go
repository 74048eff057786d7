package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// errType is the span's error.type ("" for a success).
	errType string
	// cut: the server cut the stream; the span ends with the connection.
	cut bool
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
// exactly one CLIENT span named "{operation} {model}", child of the server
// span of the request that made it, with the model, tokens and finish
// reason the server sent (modelspec.Exchange), and start and end within
// the times the client measured: a stream's span ends with its last event,
// not when its head arrived.
func TestGoGenAIClient(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	ms := testenv.StartModelServer(t)
	app, addr := testenv.StartGenAIApp(t, ms.URL())
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--output", "json", "--service-name", "genaiapp")
	if !strings.Contains(a.Stderr(), "net/http client") {
		t.Fatalf("the client probe was not attached:\n%s", a.Stderr())
	}

	q := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	cases := []genaiCase{
		{name: "chat stream usage", batch: q("api", modelspec.OpenAIChat, "stream", "1", "include_usage", "1", "model", "gpt-test@ttft=80,gap=10,chunks=5"), op: "chat"},
		{name: "chat stream", batch: q("api", modelspec.OpenAIChat, "stream", "1", "model", "gpt-test@ttft=30,gap=5"), op: "chat"},
		{name: "chat", batch: q("api", modelspec.OpenAIChat, "model", "gpt-test@ttft=20"), op: "chat"},
		{name: "completions", batch: q("api", modelspec.OpenAICompletions, "model", "gpt-instruct"), op: "text_completion"},
		{name: "embeddings", batch: q("api", modelspec.OpenAIEmbeddings, "model", "text-embedding-test", "inputs", "3"), op: "embeddings"},
		{name: "responses stream", batch: q("api", modelspec.OpenAIResponses, "stream", "1", "model", "gpt-resp@ttft=30,gap=5"), op: "chat"},
		{name: "anthropic stream", batch: q("api", modelspec.AnthropicMessages, "stream", "1", "model", "claude-test@ttft=30,gap=5"), op: "chat"},
		{name: "anthropic", batch: q("api", modelspec.AnthropicMessages, "model", "claude-test"), op: "chat"},
		{name: "ollama chat", batch: q("api", modelspec.OllamaChat, "stream", "1", "model", "llama-test@ttft=30,gap=5"), op: "chat"},
		{name: "ollama generate", batch: q("api", modelspec.OllamaGenerate, "model", "llama-test"), op: "text_completion"},
		{name: "error", batch: q("api", modelspec.OpenAIChat, "model", "gpt-test@status=429"), op: "chat", errType: "rate_limit_exceeded"},
		{name: "cut", batch: q("api", modelspec.OpenAIChat, "stream", "1", "model", "gpt-test@ttft=20,gap=5,chunks=6,cut=3"), op: "chat", cut: true},
		{name: "big prompt", batch: q("api", modelspec.OpenAIChat, "prompt_bytes", strconv.Itoa(2<<20), "model", "gpt-test"), op: "chat"},
	}
	type made struct {
		c    genaiCase
		call modelspec.Call
		x    modelspec.Exchange
	}
	var all []made
	for _, c := range cases {
		for _, call := range callGenAIApp(t, addr, c.batch) {
			all = append(all, made{c, call, ms.Exchange(t, call)})
		}
	}
	if !alive(app.Process.Pid) {
		t.Fatal("the traced service died")
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
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
	for _, m := range all {
		want := m.x.Request.Model
		if i := strings.IndexByte(want, '@'); i >= 0 {
			want = want[:i]
		}
		var found []observed
		for _, s := range clients {
			if s.Attrs["url.full"] != "" && strings.HasSuffix(s.Attrs["url.path"], m.x.Path) &&
				!s.Start.Before(m.call.Times.Start.Add(-time.Millisecond)) && !s.End.After(m.call.Times.End.Add(5*time.Millisecond)) {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %d client spans within the call's times, want 1", m.c.name, len(found))
			continue
		}
		s := found[0]
		if s.Name != m.c.op+" "+want {
			t.Errorf("%s: span name %q, want %q", m.c.name, s.Name, m.c.op+" "+want)
		}
		if _, ok := servers[s.ParentSpanID]; !ok {
			t.Errorf("%s: the span's parent is not the /call request's server span", m.c.name)
		}
		check := map[string]string{
			"gen_ai.operation.name": m.c.op,
			"gen_ai.request.model":  m.x.Request.Model,
		}
		if m.x.Response.Model != "" {
			check["gen_ai.response.model"] = m.x.Response.Model
		}
		if u := m.x.Response.Usage; u != nil && m.c.errType == "" && !m.c.cut {
			check["gen_ai.usage.output_tokens"] = strconv.Itoa(u.Output)
		}
		if m.c.errType != "" {
			check["error.type"] = m.c.errType
		}
		for k, v := range check {
			if s.Attrs[k] != v {
				t.Errorf("%s: %s = %q, want %q\nattrs %v", m.c.name, k, s.Attrs[k], v, s.Attrs)
			}
		}
		// The span lasts as long as the call: it ends after the client's
		// last event came, not at the response head.
		if !m.call.Times.Head.IsZero() && m.call.Times.End.Sub(m.call.Times.Head) > 20*time.Millisecond &&
			s.End.Before(m.call.Times.End.Add(-15*time.Millisecond)) {
			t.Errorf("%s: span ends at %v, the call at %v (head %v)", m.c.name, s.End.Sub(m.call.Times.Start), m.call.Times.End.Sub(m.call.Times.Start), m.call.Times.Head.Sub(m.call.Times.Start))
		}
		t.Logf("%s: %s %v attrs=%v", m.c.name, s.Name, s.End.Sub(s.Start), s.Attrs)
	}
}
