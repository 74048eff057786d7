package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// kernelClientCall is one call the Python client makes in
// TestKernelGenAIClient, and what its span must say besides what the call
// itself reports.
// apiError stands for the type of the error object the client received.
const apiError = "(api)"

type kernelClientCall struct {
	batch     modelspec.Batch
	operation string
	errorType string // "" for a call that succeeds; apiError: the API error object's type
	truncated string // zerotrace.gen_ai.body.truncated
}

// TestKernelGenAIClient traces a Python program (standard library
// http.client, plain HTTP) calling tests/modelserver, from the kernel: each
// call must be one CLIENT span in Jaeger named "{operation} {model}", with
// the model, token counts and finish reasons the client received, a stream
// measured whole (the span ends with the read that brought its last event,
// before the client returned; its first token arrived between the call's
// start and the moment the client saw it), and the error type of an error
// object, a cut stream, a 2 MB prompt (marked truncated, model kept) and a
// malformed body handled without harm. No prompt or answer text may appear
// in Jaeger or in the agent's output.
func TestKernelGenAIClient(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	const answer = "ztcanaryanswer"
	ms := testenv.StartModelServer(t, "-defaults", "ttft=60,gap=10,say="+answer)
	j := jaeger.Start(t)
	const prompt = "zt-canary-prompt"
	calls := []kernelClientCall{
		{batch: modelspec.Batch{API: modelspec.OpenAIChat, Stream: true, IncludeUsage: true, Model: "gpt-stream"}, operation: "chat"},
		{batch: modelspec.Batch{API: modelspec.OpenAIChat, Model: "gpt-whole"}, operation: "chat"},
		{batch: modelspec.Batch{API: modelspec.AnthropicMessages, Stream: true, Model: "claude-stream"}, operation: "chat"},
		{batch: modelspec.Batch{API: modelspec.OllamaChat, Stream: true, Model: "llama-stream"}, operation: "chat"},
		{batch: modelspec.Batch{API: modelspec.OpenAIEmbeddings, Model: "embed-test"}, operation: "embeddings"},
		{batch: modelspec.Batch{API: modelspec.OpenAIChat, Stream: true, IncludeUsage: true, Model: "gpt-cut@cut=2"}, operation: "chat", errorType: "stream_cut"},
		{batch: modelspec.Batch{API: modelspec.OpenAIChat, Model: "gpt-limited@status=429"}, operation: "chat", errorType: apiError},
		{batch: modelspec.Batch{API: modelspec.AnthropicMessages, Model: "claude-busy@status=529"}, operation: "chat", errorType: apiError},
		{batch: modelspec.Batch{API: modelspec.OpenAIChat, Model: "gpt-big", PromptBytes: 2 << 20}, operation: "chat", truncated: "request"},
		{batch: modelspec.Batch{API: modelspec.OpenAIChat, Model: "gpt-bad@malformed"}, operation: "chat"},
	}

	// One shell runs the calls one after the other, once the agent traces
	// it: its children (the Python clients) are traced with it.
	var script strings.Builder
	script.WriteString("read go\n")
	py := testenv.Python(t)
	for _, c := range calls {
		b := c.batch
		b.Prompt = prompt
		cmd := testenv.GenAIClientCommand(t, modelspec.DriverPython, ms.URL(), b)
		script.WriteString(shellQuote(py))
		for _, a := range cmd.Args[1:] {
			script.WriteString(" " + shellQuote(a))
		}
		script.WriteString(" || exit 1\n")
	}
	sh := exec.Command("/bin/sh", "-c", script.String())
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	sh.Stdout, sh.Stderr = &stdout, &stderr
	if err := testenv.StartTied(sh, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sh.Process.Kill() })
	service := fmt.Sprintf("e2e-pygenai-%d", time.Now().UnixNano())
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(sh.Process.Pid), "--output", "json",
		"--service-name", service, "--otlp-endpoint", j.OTLPEndpoint())
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sh.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the Python clients: %v\n%s", err, stderr.String())
		}
	case <-time.After(testenv.Timeout(t, 60*time.Second)):
		t.Fatalf("the Python clients did not finish\n%s", stderr.String())
	}
	got, err := modelspec.ReadCalls(&stdout)
	if err != nil || len(got) != len(calls) {
		t.Fatalf("%d calls reported (%v):\n%s", len(got), err, stdout.String())
	}
	if !alive(ms.Cmd.Process.Pid) {
		t.Fatal("the model server died")
	}
	// The agent detaches and exits by itself once the shell it traces has
	// exited (a SIGINT then would cut its flush short).
	select {
	case <-a.done:
		if a.err != nil {
			t.Fatalf("zerotrace exited with %v:\n%s", a.err, a.Stderr())
		}
	case <-time.After(testenv.Timeout(t, 30*time.Second)):
		a.stop()
	}
	// What the kernel did not copy (the 2 MB prompt's middle) is
	// counted, and told.
	if !regexp.MustCompile(`kernel_genai_body_cut=[1-9]`).MatchString(a.Stderr()) {
		t.Errorf("the agent does not report the model-call bytes it did not copy:\n%s", a.Stderr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(t, 60*time.Second))
	defer cancel()
	js, err := j.WaitForSpans(ctx, service, len(calls), testenv.Timeout(t, 30*time.Second))
	if err != nil {
		t.Fatalf("reading the spans back from Jaeger: %v", err)
	}
	byModel := map[string]observed{}
	for _, s := range fromJaeger(js) {
		if s.Kind != "client" {
			continue
		}
		m := s.Attrs["gen_ai.request.model"]
		if _, dup := byModel[m]; dup {
			t.Errorf("two client spans for model %q", m)
		}
		byModel[m] = s
	}
	for i, c := range calls {
		call := got[i]
		s, ok := byModel[c.batch.Model]
		if !ok {
			t.Errorf("call %d (%s %s): no client span; have %v", i, c.batch.API, c.batch.Model, keys(byModel))
			continue
		}
		checkKernelClientSpan(t, c, call, ms.Exchange(t, call), s)
	}

	// Neither the prompt nor the answer, anywhere.
	raw := jaegerRaw(t, j, service)
	for _, secret := range []string{prompt, answer} {
		for where, text := range map[string]string{"JSON output": a.Stdout(), "stderr": a.Stderr(), "Jaeger": raw} {
			if strings.Contains(text, secret) {
				t.Errorf("%q appears in the %s", secret, where)
			}
		}
	}
}

// checkKernelClientSpan compares one call's span with what the client
// measured (call) and the server sent (x).
func checkKernelClientSpan(t *testing.T, c kernelClientCall, call modelspec.Call, x modelspec.Exchange, s observed) {
	t.Helper()
	name := c.batch.API + " " + c.batch.Model
	if want := c.operation + " " + c.batch.Model; s.Name != want {
		t.Errorf("%s: span name %q, want %q", name, s.Name, want)
	}
	want := map[string]string{
		"gen_ai.operation.name":     c.operation,
		"zerotrace.source":          "kernel",
		"http.response.status_code": strconv.Itoa(call.Status),
	}
	switch c.errorType {
	case "":
	case apiError:
		if call.ErrorType == "" {
			t.Errorf("%s: the client saw no error object", name)
		}
		want["error.type"] = call.ErrorType
	default:
		want["error.type"] = c.errorType
	}
	if c.batch.Model != "gpt-bad@malformed" && c.errorType == "" {
		want["gen_ai.response.model"] = call.ResponseModel
		if call.ResponseID != "" {
			want["gen_ai.response.id"] = call.ResponseID
		}
		if len(call.FinishReasons) > 0 {
			fr, _ := json.Marshal(call.FinishReasons)
			want["gen_ai.response.finish_reasons"] = string(fr)
		}
		if call.Usage != nil {
			want["gen_ai.usage.input_tokens"] = strconv.Itoa(call.Usage.Input)
			if c.operation != "embeddings" {
				want["gen_ai.usage.output_tokens"] = strconv.Itoa(call.Usage.Output)
			}
		}
	}
	for k, v := range want {
		if s.Attrs[k] != v {
			t.Errorf("%s: %s = %q, want %q (server sent %+v)", name, k, s.Attrs[k], v, x.Response)
		}
	}
	if got := s.Attrs["zerotrace.gen_ai.body.truncated"]; got != c.truncated {
		t.Errorf("%s: body truncated %q, want %q", name, got, c.truncated)
	}
	if (c.errorType != "") != (s.Status == "error") {
		t.Errorf("%s: status %s, error type %q", name, s.Status, s.Attrs["error.type"])
	}
	// The span lies within the call as the client measured it: it ends
	// with the read that brought the answer's end, before the client
	// returned.
	slack := time.Millisecond
	if s.Start.Before(call.Times.Start.Add(-slack)) || s.End.After(call.Times.End.Add(slack)) {
		t.Errorf("%s: span [%v, %v] outside the call [%v, %v]", name, s.Start, s.End, call.Times.Start, call.Times.End)
	}
	if !call.Stream || c.errorType != "" {
		return
	}
	if !x.Times.End.IsZero() && s.End.Before(x.Times.End) {
		t.Errorf("%s: span ends at %v, before the server's last write %v", name, s.End, x.Times.End)
	}
	ttft, err := strconv.ParseFloat(s.Attrs["zerotrace.gen_ai.time_to_first_token"], 64)
	first := s.Start.Add(time.Duration(ttft * float64(time.Second)))
	if err != nil || first.Before(x.Times.FirstToken) || first.After(call.Times.FirstToken.Add(slack)) {
		t.Errorf("%s: first token at %v (%q), not between the server's write %v and the client's %v",
			name, first, s.Attrs["zerotrace.gen_ai.time_to_first_token"], x.Times.FirstToken, call.Times.FirstToken)
	}
	ttfc, err := strconv.ParseFloat(s.Attrs["gen_ai.response.time_to_first_chunk"], 64)
	first = s.Start.Add(time.Duration(ttfc * float64(time.Second)))
	if err != nil || first.Before(x.Times.FirstChunk) || first.After(call.Times.FirstChunk.Add(slack)) {
		t.Errorf("%s: first chunk at %v (%q), not between the server's write %v and the client's %v",
			name, first, s.Attrs["gen_ai.response.time_to_first_chunk"], x.Times.FirstChunk, call.Times.FirstChunk)
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
