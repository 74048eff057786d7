package testenv

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
)

// agrees checks that what a client driver reported of a call is what the
// model server recorded of it: the truth both sides of a GenAI test rely on.
func agrees(t *testing.T, c modelspec.Call, x modelspec.Exchange) {
	t.Helper()
	if c.Status != x.Response.Status || c.API != x.API || c.Model != x.Request.Model || c.Stream != x.Request.Stream {
		t.Errorf("call %+v\nrecorded as %+v", c, x)
	}
	if c.ResponseModel != x.Response.Model || c.ResponseID != x.Response.ID {
		t.Errorf("response id/model: client %q/%q, server %q/%q", c.ResponseID, c.ResponseModel, x.Response.ID, x.Response.Model)
	}
	if !reflect.DeepEqual(c.FinishReasons, x.Response.FinishReasons) {
		t.Errorf("finish reasons: client %v, server %v", c.FinishReasons, x.Response.FinishReasons)
	}
	if !reflect.DeepEqual(c.Usage, x.Response.Usage) {
		t.Errorf("usage: client %+v, server %+v", c.Usage, x.Response.Usage)
	}
	if c.Text != x.Response.Text {
		t.Errorf("text: client %q, server %q", c.Text, x.Response.Text)
	}
	if c.Stream && c.Chunks != x.Response.Chunks {
		t.Errorf("content chunks: client %d, server %d", c.Chunks, x.Response.Chunks)
	}
	if c.ErrorType != x.Response.ErrorType {
		t.Errorf("error type: client %q, server %q", c.ErrorType, x.Response.ErrorType)
	}
	if c.TLS != x.TLS {
		t.Errorf("TLS: client %v, server %v", c.TLS, x.TLS)
	}
	if c.Proto != "" && c.Proto != x.Proto {
		t.Errorf("protocol: client %s, server %s", c.Proto, x.Proto)
	}
	// The server's times lie inside the client's (1 ms for the clocks'
	// reads on either side of one write).
	const eps = time.Millisecond
	tc, ts := c.Times, x.Times
	if ts.Start.Before(tc.Start) || (!tc.FirstToken.IsZero() && tc.FirstToken.Before(ts.FirstToken)) ||
		tc.End.Add(eps).Before(ts.End) && !x.Response.Cut {
		t.Errorf("times: client %+v, server %+v", tc, ts)
	}
}

// apisOf lists what each driver calls.
var apisOf = map[string][]string{
	modelspec.DriverGo: {modelspec.OpenAIChat, modelspec.OpenAICompletions, modelspec.OpenAIEmbeddings, modelspec.OpenAIResponses,
		modelspec.AnthropicMessages, modelspec.OllamaChat, modelspec.OllamaGenerate, modelspec.OllamaEmbed},
	modelspec.DriverPython: {modelspec.OpenAIChat, modelspec.OpenAICompletions, modelspec.OpenAIEmbeddings, modelspec.OpenAIResponses,
		modelspec.AnthropicMessages, modelspec.OllamaChat, modelspec.OllamaGenerate, modelspec.OllamaEmbed},
	modelspec.DriverNode: {modelspec.OpenAIChat, modelspec.OpenAICompletions, modelspec.OpenAIEmbeddings, modelspec.OpenAIResponses},
}

// TestGenAIDrivers: every driver calls every API it knows, streamed and
// not, over HTTPS (and the Go one over HTTP/2 and HTTP/1.1, the Python one
// over plain HTTP too), and reports what the server recorded.
func TestGenAIDrivers(t *testing.T) {
	ms := StartModelServer(t, "-defaults", "ttft=20,gap=5,chunks=3,in=9,cached=2,reasoning=1")
	type run struct {
		driver, base string
		env          []string
		proto        string
		apis         []string // nil: all the driver knows
	}
	runs := []run{
		{modelspec.DriverGo, ms.TLSURL(), ms.TrustEnv(), "HTTP/2.0", nil},
		{modelspec.DriverGo, ms.TLSURL(), append(ms.TrustEnv(), "GODEBUG=http2client=0"), "HTTP/1.1", nil},
		{modelspec.DriverGo, ms.URL(), nil, "HTTP/1.1", nil},
		{modelspec.DriverPython, ms.TLSURL(), ms.TrustEnv(), "HTTP/1.1", nil},
		{modelspec.DriverPython, ms.URL(), nil, "HTTP/1.1", []string{modelspec.OpenAIChat, modelspec.OllamaChat}},
		{modelspec.DriverNode, ms.TLSURL(), ms.TrustEnv(), "HTTP/1.1", nil},
	}
	for _, r := range runs {
		name := r.driver + "/" + strings.SplitN(r.base, ":", 2)[0] + "/" + r.proto
		t.Run(name, func(t *testing.T) {
			apis := r.apis
			if apis == nil {
				apis = apisOf[r.driver]
			}
			for _, api := range apis {
				for _, stream := range []bool{false, true} {
					b := modelspec.Batch{API: api, N: 2, Stream: stream, IncludeUsage: stream, Model: "gpt-test@id=x"}
					calls := RunGenAIClient(t, GenAIClientCommand(t, r.driver, r.base, b, r.env...))
					if len(calls) != 2 {
						t.Fatalf("%s stream=%v: %d calls, want 2", api, stream, len(calls))
					}
					for i, c := range calls {
						if c.Index != i || c.Driver != r.driver || c.Status != http.StatusOK || c.Error != "" {
							t.Errorf("%s stream=%v: call %+v", api, stream, c)
							continue
						}
						if c.Proto != "" && c.Proto != r.proto {
							t.Errorf("%s: protocol %s, want %s", api, c.Proto, r.proto)
						}
						agrees(t, c, ms.Exchange(t, c))
					}
				}
			}
		})
	}
}

// TestGenAIDriverErrors: each driver reports an error answer with the API's
// error type, and a cut stream as an error.
func TestGenAIDriverErrors(t *testing.T) {
	ms := StartModelServer(t)
	for _, driver := range []string{modelspec.DriverGo, modelspec.DriverPython, modelspec.DriverNode} {
		for _, tc := range []struct {
			api, model string
			stream     bool
			status     int
			errType    string
		}{
			{modelspec.OpenAIChat, "m@status=429", false, 429, "requests"},
			{modelspec.OpenAIResponses, "m@status=500", true, 500, "server_error"},
			{modelspec.OpenAIChat, "m@errat=1", true, 200, "server_error"},
			{modelspec.OpenAIChat, "m@cut=1", true, 200, ""},
			{modelspec.AnthropicMessages, "c@status=529", false, 529, "overloaded_error"},
			{modelspec.OllamaChat, "l@status=404", true, 404, ""},
		} {
			if !contains(apisOf[driver], tc.api) {
				continue
			}
			b := modelspec.Batch{API: tc.api, Stream: tc.stream, Model: tc.model}
			calls := RunGenAIClient(t, GenAIClientCommand(t, driver, ms.TLSURL(), b, ms.TrustEnv()...))
			if len(calls) != 1 {
				t.Fatalf("%s %s %s: %d calls", driver, tc.api, tc.model, len(calls))
			}
			c := calls[0]
			x := ms.Exchange(t, c)
			if c.Status != tc.status || c.ErrorType != tc.errType || (c.Error == "" && c.ErrorMessage == "") || c.Status != x.Response.Status {
				t.Errorf("%s %s %s: call %+v\nserver %+v", driver, tc.api, tc.model, c, x.Response)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestGenAIAppServe: the Go driver as a service makes the calls in its
// handlers and answers with them; /gateway times its three phases before
// the model call.
func TestGenAIAppServe(t *testing.T) {
	ms := StartModelServer(t)
	_, addr := StartGenAIApp(t, ms.TLSURL(), ms.TrustEnv()...)
	resp, err := http.Get("http://" + addr + "/call?api=anthropic.messages&n=2&stream=1&model=claude-test@chunks=4")
	if err != nil {
		t.Fatal(err)
	}
	calls, err := modelspec.ReadCalls(resp.Body)
	resp.Body.Close()
	if err != nil || len(calls) != 2 {
		t.Fatalf("calls %+v, err %v", calls, err)
	}
	for _, c := range calls {
		if c.Proto != "HTTP/2.0" || c.Chunks != 4 || c.Error != "" {
			t.Errorf("call %+v", c)
		}
		agrees(t, c, ms.Exchange(t, c))
	}

	resp, err = http.Get("http://" + addr + "/gateway?phase_ms=10&stream=1&model=gpt-test@ttft=30")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var g struct {
		Start  time.Time
		Phases []struct {
			Name       string
			Start, End time.Time
		}
		Call modelspec.Call
		End  time.Time
	}
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		t.Fatal(err)
	}
	var names []string
	last := g.Start
	for _, p := range g.Phases {
		names = append(names, p.Name)
		if p.Start.Before(last) || p.End.Sub(p.Start) < 10*time.Millisecond {
			t.Errorf("phase %+v after %v", p, last)
		}
		last = p.End
	}
	if strings.Join(names, " ") != "main.parseInput main.retrieve main.buildPrompt" {
		t.Errorf("phases %v", names)
	}
	if g.Call.Times.Start.Before(last) || g.Call.Times.FirstToken.Sub(g.Call.Times.Start) < 30*time.Millisecond || g.End.Before(g.Call.Times.End) {
		t.Errorf("call %+v after the phases ending %v", g.Call.Times, last)
	}
	agrees(t, g.Call, ms.Exchange(t, g.Call))
}

// TestPyModelServer: the Python model server answers the Go driver's calls
// of each API it serves, streamed and not, and records what the client saw;
// an error status and a cut stream too.
func TestPyModelServer(t *testing.T) {
	ms := StartPyModelServer(t, "--defaults", "ttft=20,gap=5,chunks=3,in=9,cached=2")
	for _, api := range []string{modelspec.OpenAIChat, modelspec.OpenAICompletions, modelspec.OpenAIEmbeddings,
		modelspec.AnthropicMessages, modelspec.OllamaChat, modelspec.OllamaGenerate} {
		for _, stream := range []bool{false, true} {
			b := modelspec.Batch{API: api, N: 2, Stream: stream, IncludeUsage: stream, Model: "gpt-test@id=p"}
			for _, c := range RunGenAIClient(t, GenAIClientCommand(t, modelspec.DriverGo, ms.URL(), b)) {
				if c.Status != http.StatusOK || c.Error != "" {
					t.Errorf("%s stream=%v: call %+v", api, stream, c)
					continue
				}
				x := ms.Exchange(t, c)
				agrees(t, c, x)
				if stream && api != modelspec.OpenAIEmbeddings && (len(x.Times.Chunks) != 3 || x.Times.Chunks[0] < 20*time.Millisecond) {
					t.Errorf("%s: chunk times %v", api, x.Times.Chunks)
				}
			}
		}
	}
	for _, tc := range []struct {
		model   string
		status  int
		errType string
	}{{"m@status=429", 429, "requests"}, {"m@errat=1", 200, "server_error"}, {"m@cut=1", 200, ""}} {
		b := modelspec.Batch{API: modelspec.OpenAIChat, Stream: true, Model: tc.model}
		c := RunGenAIClient(t, GenAIClientCommand(t, modelspec.DriverGo, ms.URL(), b))[0]
		x := ms.Exchange(t, c)
		if c.Status != tc.status || c.ErrorType != tc.errType || c.Error == "" || x.Response.ErrorType != tc.errType ||
			x.Response.Cut != (tc.model == "m@cut=1") {
			t.Errorf("%s: call %+v\nserver %+v", tc.model, c, x.Response)
		}
	}
}
