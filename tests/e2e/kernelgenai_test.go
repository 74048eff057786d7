package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestKernelGenAIServer traces a Python model server (plain HTTP, standard
// library) from the kernel: a streamed chat completion and a non-streamed
// one must each be one SERVER span named "chat <model>" with the GenAI
// attributes the server sent (response model, finish reason, token
// counts), the stream measured whole (its span ends after the last chunk;
// its first chunk came after the server's 80 ms), and no prompt or answer
// text in any attribute. A third call sends a 256 KiB prompt in the order
// the Go SDKs write it (messages first, the model last): the model still
// comes from the end of the body, which is marked cut.
func TestKernelGenAIServer(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "server.py")
	backend, addr := testenv.StartSampleApp(t, python, script)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(backend.Process.Pid), "--output", "json")

	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	call := func(body string) string {
		resp, err := c.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		return string(b)
	}
	const small = `{"model":"gpt-test","messages":[{"role":"user","content":"zt-canary-prompt"}],"stream":%v}`
	if s := call(fmt.Sprintf(small, true)); !strings.Contains(s, "data: [DONE]") || !strings.Contains(s, `"completion_tokens": 5`) {
		t.Fatalf("stream: %q", s)
	}
	if s := call(fmt.Sprintf(small, false)); !strings.Contains(s, `"finish_reason": "stop"`) {
		t.Fatalf("answer: %q", s)
	}
	big := `{"messages":[{"content":"zt-canary-prompt ` + strings.Repeat("lorem ipsum ", 256<<10/12) + `","role":"user"}],"model":"gpt-test","stream":false}`
	if s := call(big); !strings.Contains(s, `"finish_reason": "stop"`) {
		t.Fatalf("answer to the big prompt: %q", s)
	}
	if !alive(backend.Process.Pid) {
		t.Fatal("the traced server died")
	}
	a.stop()

	var got []observed
	for _, s := range fromJSON(a.jsonSpans()) {
		for k, v := range s.Attrs {
			if strings.Contains(v, "zt-canary") || strings.Contains(v, "t0 t1") {
				t.Errorf("content exported in %s: %q", k, v)
			}
		}
		if s.Kind == "server" && s.Attrs["url.path"] == "/v1/chat/completions" {
			got = append(got, s)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d server spans for the three calls: %v", len(got), got)
	}
	for i, s := range got {
		stream := i == 0
		for k, want := range map[string]string{
			"gen_ai.operation.name":          "chat",
			"gen_ai.provider.name":           "openai",
			"gen_ai.request.model":           "gpt-test",
			"gen_ai.response.model":          "gpt-test-0613",
			"gen_ai.response.id":             "chatcmpl-py1",
			"gen_ai.response.finish_reasons": "[stop]",
			"gen_ai.usage.input_tokens":      "11",
			"gen_ai.usage.output_tokens":     "5",
			"zerotrace.source":               "kernel",
		} {
			if s.Attrs[k] != want {
				t.Errorf("call %d: %s = %q, want %q", i, k, s.Attrs[k], want)
			}
		}
		if s.Name != "chat gpt-test" {
			t.Errorf("call %d: name %q", i, s.Name)
		}
		if (s.Attrs["gen_ai.request.stream"] == "true") != stream {
			t.Errorf("call %d: stream %q", i, s.Attrs["gen_ai.request.stream"])
		}
		if cut, want := s.Attrs["zerotrace.gen_ai.body.truncated"], map[bool]string{true: "request"}[i == 2]; cut != want {
			t.Errorf("call %d: body truncated %q, want %q", i, cut, want)
		}
		if !stream {
			continue
		}
		// The first chunk after the server's 80 ms, the end after all
		// five content chunks 20 ms apart.
		ttfc, _ := strconv.ParseFloat(s.Attrs["gen_ai.response.time_to_first_chunk"], 64)
		ttft, _ := strconv.ParseFloat(s.Attrs["zerotrace.gen_ai.time_to_first_token"], 64)
		if ttfc < 0.079 || ttft < ttfc+0.019 || s.Attrs["zerotrace.gen_ai.chunks"] != "8" {
			t.Errorf("stream timing: first chunk %v s, first token %v s, chunks %s", ttfc, ttft, s.Attrs["zerotrace.gen_ai.chunks"])
		}
		if d := s.End.Sub(s.Start); d < 180*time.Millisecond {
			t.Errorf("stream span lasts %v: ends before its last chunk", d)
		}
	}
}
