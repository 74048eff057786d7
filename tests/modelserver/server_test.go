package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
)

// testServer runs the model server in the test process on the one port
// that serves plain HTTP and TLS, the way main does.
type testServer struct {
	addr string
	pool *x509.CertPool
	s    *server
}

func startServer(t *testing.T, h2 bool) *testServer {
	t.Helper()
	cert, caPEM, err := newCertificate([]string{"model.test"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("the CA PEM does not parse")
	}
	s := newServer(modelspec.Defaults())
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	srv := &http.Server{Handler: s}
	if !h2 {
		conf.NextProtos = []string{"http/1.1"}
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(newSniffListener(raw, conf))
	t.Cleanup(func() { srv.Close() })
	return &testServer{addr: raw.Addr().String(), pool: pool, s: s}
}

// client is a plain-HTTP client, or a TLS one trusting the test CA that
// offers h2 unless h1.
func (ts *testServer) client(tlsOn, h1 bool) (*http.Client, string) {
	if !tlsOn {
		return &http.Client{Transport: &http.Transport{}}, "http://" + ts.addr
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool}, ForceAttemptHTTP2: true}
	if h1 {
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr}, "https://" + ts.addr
}

func (ts *testServer) stats(t *testing.T, since int) []modelspec.Exchange {
	t.Helper()
	// An exchange is recorded when its handler returns, just after the
	// client has read the last byte.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts.s.mu.Lock()
		var out []modelspec.Exchange
		for _, x := range ts.s.done {
			if x.Seq > since {
				out = append(out, x)
			}
		}
		inflight := ts.s.seq > len(ts.s.done)
		ts.s.mu.Unlock()
		if !inflight || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sse is one server-sent event or NDJSON line and when it arrived.
type sse struct {
	name string
	data string
	at   time.Time
}

// post sends body to path and reads the answer event by event.
type answer struct {
	status  int
	proto   string
	ctype   string
	head    time.Time // response head received
	events  []sse     // streamed answers
	body    []byte    // the rest, for a non-streamed answer
	readErr error
	start   time.Time
	end     time.Time
}

func post(t *testing.T, c *http.Client, url, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	a := answer{start: time.Now()}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	a.head = time.Now()
	a.status, a.proto, a.ctype = resp.StatusCode, resp.Proto, resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(a.ctype, "text/event-stream"):
		a.events, a.readErr = readSSE(resp.Body)
	case strings.HasPrefix(a.ctype, "application/x-ndjson"):
		a.events, a.readErr = readNDJSON(resp.Body)
	default:
		a.body, a.readErr = io.ReadAll(resp.Body)
	}
	a.end = time.Now()
	return a
}

func readSSE(r io.Reader) ([]sse, error) {
	var out []sse
	var cur sse
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return out, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if cur.data != "" || cur.name != "" {
				cur.at = time.Now()
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func readNDJSON(r io.Reader) ([]sse, error) {
	var out []sse
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, sse{data: line, at: time.Now()})
		}
		if err != nil {
			return out, err
		}
	}
}

// eof: the stream ended normally.
func (a answer) complete() bool { return errors.Is(a.readErr, io.EOF) || a.readErr == nil }

func jsonOf(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return m
}

// path digs into decoded JSON: "choices.0.delta.content".
func path(v any, p string) any {
	for _, k := range strings.Split(p, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := 0
			for _, c := range k {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// TestShapes: every API answers, streamed and not, over plain HTTP, TLS with
// h2 and TLS with HTTP/1.1, with the fields its clients read, and records
// the truth.
func TestShapes(t *testing.T) {
	ts := startServer(t, true)
	for _, tr := range []struct {
		name   string
		tls    bool
		h1     bool
		proto  string
		tlsRec bool
	}{{"plain", false, false, "HTTP/1.1", false}, {"tls-h2", true, false, "HTTP/2.0", true}, {"tls-h1", true, true, "HTTP/1.1", true}} {
		t.Run(tr.name, func(t *testing.T) {
			c, base := ts.client(tr.tls, tr.h1)
			type check func(t *testing.T, a answer)
			for _, tc := range []struct {
				name, path, body string
				check            check
			}{
				{"chat", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"model":"gpt-test@chunks=3,in=7,cached=2,reasoning=1,id=cc1"}`,
					func(t *testing.T, a answer) {
						m := jsonOf(t, string(a.body))
						want := map[string]any{"id": "cc1", "object": "chat.completion", "model": "gpt-test", "choices.0.message.content": "tok0 tok1 tok2 ",
							"choices.0.finish_reason": "stop", "usage.prompt_tokens": 7.0, "usage.completion_tokens": 3.0,
							"usage.prompt_tokens_details.cached_tokens": 2.0, "usage.completion_tokens_details.reasoning_tokens": 1.0}
						for k, v := range want {
							if got := path(m, k); got != v {
								t.Errorf("%s = %v, want %v", k, got, v)
							}
						}
					}},
				{"chat-stream-usage", "/v1/chat/completions", `{"messages":[],"model":"gpt-test@chunks=3,finish=stop|length","stream_options":{"include_usage":true},"stream":true}`,
					func(t *testing.T, a answer) {
						// role chunk, 3 content chunks, finish chunk, usage chunk, [DONE]
						if len(a.events) != 7 || a.events[6].data != "[DONE]" {
							t.Fatalf("events: %+v", a.events)
						}
						if got := path(jsonOf(t, a.events[0].data), "choices.1.delta.role"); got != "assistant" {
							t.Errorf("role chunk: %v", a.events[0].data)
						}
						if got := path(jsonOf(t, a.events[2].data), "choices.0.delta.content"); got != "tok1 " {
							t.Errorf("content chunk 1: %v", a.events[2].data)
						}
						fin := jsonOf(t, a.events[4].data)
						if path(fin, "choices.0.finish_reason") != "stop" || path(fin, "choices.1.finish_reason") != "length" {
							t.Errorf("finish chunk: %v", a.events[4].data)
						}
						u := jsonOf(t, a.events[5].data)
						if path(u, "usage.completion_tokens") != 3.0 || len(path(u, "choices").([]any)) != 0 {
							t.Errorf("usage chunk: %v", a.events[5].data)
						}
					}},
				{"chat-stream-no-usage", "/v1/chat/completions", `{"model":"gpt-test@chunks=2","stream":true}`,
					func(t *testing.T, a answer) {
						if len(a.events) != 5 || strings.Contains(a.events[3].data, "usage") {
							t.Errorf("without include_usage: %+v", a.events)
						}
					}},
				{"completions-stream", "/v1/completions", `{"prompt":"p","model":"davinci@chunks=2","stream":true,"stream_options":{"include_usage":true}}`,
					func(t *testing.T, a answer) {
						if len(a.events) != 5 || path(jsonOf(t, a.events[0].data), "choices.0.text") != "tok0 " ||
							path(jsonOf(t, a.events[2].data), "choices.0.finish_reason") != "stop" ||
							path(jsonOf(t, a.events[3].data), "usage.prompt_tokens") != 12.0 {
							t.Errorf("events: %+v", a.events)
						}
					}},
				{"embeddings-base64", "/v1/embeddings", `{"input":["a","b","c"],"model":"emb@dim=4","encoding_format":"base64"}`,
					func(t *testing.T, a answer) {
						m := jsonOf(t, string(a.body))
						data := path(m, "data").([]any)
						raw, err := base64.StdEncoding.DecodeString(path(m, "data.2.embedding").(string))
						if len(data) != 3 || err != nil || len(raw) != 16 || path(m, "usage.prompt_tokens") != 12.0 {
							t.Errorf("body: %s", a.body)
						}
					}},
				{"responses-stream", "/v1/responses", `{"input":"hi","model":"gpt-r@chunks=2,reasoning=3","stream":true}`,
					func(t *testing.T, a answer) {
						var names []string
						for _, e := range a.events {
							names = append(names, e.name)
						}
						want := "response.created response.in_progress response.output_item.added response.content_part.added " +
							"response.output_text.delta response.output_text.delta response.output_text.done response.content_part.done " +
							"response.output_item.done response.completed"
						if strings.Join(names, " ") != want {
							t.Fatalf("events %v", names)
						}
						last := jsonOf(t, a.events[9].data)
						if path(last, "sequence_number") != 9.0 || path(last, "response.usage.output_tokens_details.reasoning_tokens") != 3.0 ||
							path(last, "response.output.0.content.0.text") != "tok0 tok1 " {
							t.Errorf("terminal event: %s", a.events[9].data)
						}
					}},
				{"responses-incomplete", "/v1/responses", `{"input":"hi","model":"gpt-r@finish=max_output_tokens","max_output_tokens":5}`,
					func(t *testing.T, a answer) {
						m := jsonOf(t, string(a.body))
						if path(m, "status") != "incomplete" || path(m, "incomplete_details.reason") != "max_output_tokens" || path(m, "max_output_tokens") != 5.0 {
							t.Errorf("body: %s", a.body)
						}
					}},
				{"anthropic", "/v1/messages", `{"max_tokens":64,"messages":[],"model":"claude-test@cached=5,cachewrite=6,finish=max_tokens"}`,
					func(t *testing.T, a answer) {
						m := jsonOf(t, string(a.body))
						if path(m, "type") != "message" || path(m, "stop_reason") != "max_tokens" || path(m, "usage.cache_read_input_tokens") != 5.0 ||
							path(m, "usage.cache_creation_input_tokens") != 6.0 || path(m, "content.0.text") != "tok0 tok1 tok2 tok3 tok4 " {
							t.Errorf("body: %s", a.body)
						}
					}},
				{"anthropic-stream", "/v1/messages", `{"max_tokens":64,"messages":[],"model":"claude-test@chunks=2","stream":true}`,
					func(t *testing.T, a answer) {
						var names []string
						for _, e := range a.events {
							names = append(names, e.name)
						}
						if strings.Join(names, " ") != "message_start content_block_start ping content_block_delta content_block_delta content_block_stop message_delta message_stop" {
							t.Fatalf("events %v", names)
						}
						if d := jsonOf(t, a.events[6].data); path(d, "usage.output_tokens") != 2.0 || path(d, "delta.stop_reason") != "end_turn" {
							t.Errorf("message_delta: %s", a.events[6].data)
						}
					}},
				{"ollama-chat", "/api/chat", `{"model":"llama3@chunks=2","messages":[]}`,
					func(t *testing.T, a answer) {
						if len(a.events) != 3 || path(jsonOf(t, a.events[1].data), "message.content") != "tok1 " {
							t.Fatalf("lines: %+v", a.events)
						}
						last := jsonOf(t, a.events[2].data)
						if path(last, "done") != true || path(last, "done_reason") != "stop" || path(last, "eval_count") != 2.0 || path(last, "prompt_eval_count") != 12.0 {
							t.Errorf("last line: %s", a.events[2].data)
						}
					}},
				{"ollama-generate", "/api/generate", `{"model":"llama3","prompt":"p","stream":false}`,
					func(t *testing.T, a answer) {
						m := jsonOf(t, string(a.body))
						if path(m, "response") != "tok0 tok1 tok2 tok3 tok4 " || path(m, "done") != true || path(m, "context") == nil {
							t.Errorf("body: %s", a.body)
						}
					}},
				{"ollama-embed", "/api/embed", `{"model":"nomic","input":["a","b"]}`,
					func(t *testing.T, a answer) {
						m := jsonOf(t, string(a.body))
						if len(path(m, "embeddings").([]any)) != 2 || len(path(m, "embeddings.1").([]any)) != 8 {
							t.Errorf("body: %s", a.body)
						}
					}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					since := ts.s.seq
					a := post(t, c, base+tc.path, tc.body)
					if a.status != 200 || a.proto != tr.proto || !a.complete() {
						t.Fatalf("status %d proto %s err %v body %s", a.status, a.proto, a.readErr, a.body)
					}
					tc.check(t, a)
					xs := ts.stats(t, since)
					if len(xs) != 1 {
						t.Fatalf("%d exchanges recorded, want 1", len(xs))
					}
					if x := xs[0]; x.TLS != tr.tlsRec || x.Proto != tr.proto || !x.Request.Valid || x.Response.Status != 200 {
						t.Errorf("recorded %+v", x)
					}
				})
			}
		})
	}
}

// TestStreamTiming: the first content chunk comes after ttft, then one every
// gap; with head set, the head and the opening events come first; the
// recorded times agree with what the client saw.
func TestStreamTiming(t *testing.T) {
	ts := startServer(t, true)
	c, base := ts.client(true, false)
	since := ts.s.seq
	a := post(t, c, base+"/v1/chat/completions", `{"model":"gpt-test@ttft=80,gap=10,chunks=5,head=20","stream":true}`)
	if len(a.events) != 8 { // role, 5 content, finish, [DONE]
		t.Fatalf("events: %+v", a.events)
	}
	const slack = 250 * time.Millisecond // a loaded 2-core machine
	if d := a.head.Sub(a.start); d < 20*time.Millisecond || d > 80*time.Millisecond+slack {
		t.Errorf("head after %v, want 20 ms (before the first token)", d)
	}
	if d := a.events[0].at.Sub(a.start); d < 20*time.Millisecond {
		t.Errorf("role chunk after %v, want >= 20 ms", d)
	}
	first := a.events[1].at.Sub(a.start)
	if first < 80*time.Millisecond || first > 80*time.Millisecond+slack {
		t.Errorf("first token after %v, want 80 ms", first)
	}
	// Chunks are written on an absolute schedule, so chunk i can never
	// arrive before ttft + i*gap; a stalled client may read two at once, so
	// the gaps it sees are not checked.
	for i := 1; i <= 5; i++ {
		want := 80*time.Millisecond + time.Duration(i-1)*10*time.Millisecond
		if d := a.events[i].at.Sub(a.start); d < want || d > want+slack {
			t.Errorf("content chunk %d after %v, want %v", i-1, d, want)
		}
	}
	if d := a.end.Sub(a.start); d < 120*time.Millisecond || d > 120*time.Millisecond+slack {
		t.Errorf("stream took %v, want 120 ms", d)
	}
	x := ts.stats(t, since)[0]
	tm := x.Times
	if len(tm.Chunks) != 5 {
		t.Fatalf("recorded chunk times %v", tm.Chunks)
	}
	for i, at := range tm.Chunks {
		if want := 80*time.Millisecond + time.Duration(i)*10*time.Millisecond; at < want || at > want+slack {
			t.Errorf("recorded chunk %d at %v, want %v", i, at, want)
		}
	}
	if tm.Head.Sub(tm.BodyRead) < 20*time.Millisecond || !tm.FirstChunk.Before(tm.FirstToken) || tm.End.Before(tm.BodyRead.Add(120*time.Millisecond)) {
		t.Errorf("recorded times %+v", tm)
	}
	// The server's times lie within the client's.
	if tm.Start.Before(a.start) || tm.FirstToken.After(a.events[1].at) || tm.End.After(a.end.Add(time.Millisecond)) {
		t.Errorf("server times %+v outside the client's [%v, %v]", tm, a.start, a.end)
	}

	// A non-streamed answer takes as long as the stream would have.
	a = post(t, c, base+"/v1/chat/completions", `{"model":"gpt-test@ttft=50,gap=10,chunks=4"}`)
	if d := a.end.Sub(a.start); d < 80*time.Millisecond || d > 80*time.Millisecond+slack {
		t.Errorf("non-streamed answer took %v, want 80 ms", d)
	}
}

// TestUsageModes: include_usage is honoured, usage=always and usage=never
// override it, and the truth says what was sent.
func TestUsageModes(t *testing.T) {
	ts := startServer(t, true)
	c, base := ts.client(false, false)
	for _, tc := range []struct {
		model, streamOpts string
		want              bool
	}{
		{"m", `,"stream_options":{"include_usage":true}`, true},
		{"m", ``, false},
		{"m@usage=always", ``, true},
		{"m@usage=never", `,"stream_options":{"include_usage":true}`, false},
	} {
		since := ts.s.seq
		a := post(t, c, base+"/v1/chat/completions", `{"model":"`+tc.model+`","stream":true`+tc.streamOpts+`}`)
		got := false
		for _, e := range a.events {
			if strings.Contains(e.data, `"usage":{`) {
				got = true
			}
		}
		x := ts.stats(t, since)[0]
		if got != tc.want || (x.Response.Usage != nil) != tc.want {
			t.Errorf("%s%s: usage sent %v, recorded %+v; want %v", tc.model, tc.streamOpts, got, x.Response.Usage, tc.want)
		}
	}
}

// TestFailures: error objects per API, in-stream errors, cut connections
// (HTTP/1.1 and HTTP/2) and malformed bodies, each recorded.
func TestFailures(t *testing.T) {
	ts := startServer(t, true)
	for _, tc := range []struct {
		name, path, body string
		tls              bool
		wantStatus       int
		check            func(t *testing.T, a answer, x modelspec.Exchange)
	}{
		{"openai-429", "/v1/chat/completions", `{"model":"m@status=429"}`, false, 429, func(t *testing.T, a answer, x modelspec.Exchange) {
			m := jsonOf(t, string(a.body))
			if path(m, "error.type") != "requests" || path(m, "error.code") != "rate_limit_exceeded" || x.Response.ErrorType != "requests" {
				t.Errorf("body %s, recorded %q", a.body, x.Response.ErrorType)
			}
		}},
		{"openai-500-errtype", "/v1/embeddings", `{"model":"m@status=500,errtype=server_error","input":"x"}`, true, 500, func(t *testing.T, a answer, x modelspec.Exchange) {
			if path(jsonOf(t, string(a.body)), "error.type") != "server_error" {
				t.Errorf("body %s", a.body)
			}
		}},
		{"anthropic-529", "/v1/messages", `{"model":"c@status=529","max_tokens":5}`, true, 529, func(t *testing.T, a answer, x modelspec.Exchange) {
			m := jsonOf(t, string(a.body))
			if path(m, "type") != "error" || path(m, "error.type") != "overloaded_error" || x.Response.ErrorType != "overloaded_error" {
				t.Errorf("body %s", a.body)
			}
		}},
		{"ollama-404", "/api/chat", `{"model":"l@status=404"}`, false, 404, func(t *testing.T, a answer, x modelspec.Exchange) {
			if path(jsonOf(t, string(a.body)), "error") == nil || x.Response.ErrorType != "" || x.Response.ErrorMessage == "" {
				t.Errorf("body %s, recorded %+v", a.body, x.Response)
			}
		}},
		{"openai-stream-error", "/v1/chat/completions", `{"model":"m@errat=2","stream":true}`, true, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			last := a.events[len(a.events)-1]
			if len(a.events) != 4 || path(jsonOf(t, last.data), "error.type") != "server_error" || !a.complete() || x.Response.ErrorType != "server_error" {
				t.Errorf("events %+v err %v", a.events, a.readErr)
			}
		}},
		{"anthropic-stream-error", "/v1/messages", `{"model":"c@errat=1,errtype=overloaded_error","stream":true}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			last := a.events[len(a.events)-1]
			if last.name != "error" || path(jsonOf(t, last.data), "error.type") != "overloaded_error" {
				t.Errorf("events %+v", a.events)
			}
		}},
		{"responses-stream-error", "/v1/responses", `{"model":"r@errat=0","stream":true}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			last := a.events[len(a.events)-1]
			if len(a.events) != 5 || last.name != "error" || path(jsonOf(t, last.data), "sequence_number") != 4.0 {
				t.Errorf("events %+v", a.events)
			}
		}},
		{"ollama-stream-error", "/api/generate", `{"model":"l@errat=1"}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			if len(a.events) != 2 || path(jsonOf(t, a.events[1].data), "error") == nil {
				t.Errorf("lines %+v", a.events)
			}
		}},
		{"cut-h1", "/v1/chat/completions", `{"model":"m@cut=2","stream":true}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			if a.complete() || len(a.events) != 3 || !x.Response.Cut || x.Response.Chunks != 2 {
				t.Errorf("events %d err %v recorded %+v", len(a.events), a.readErr, x.Response)
			}
		}},
		{"cut-h2", "/v1/messages", `{"model":"c@cut=1","stream":true}`, true, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			if a.complete() || len(a.events) != 4 || !x.Response.Cut {
				t.Errorf("events %d err %v recorded %+v", len(a.events), a.readErr, x.Response)
			}
		}},
		{"cut-body", "/v1/chat/completions", `{"model":"m@cut=0"}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			if !errors.Is(a.readErr, io.ErrUnexpectedEOF) || !x.Response.Cut {
				t.Errorf("body %q err %v", a.body, a.readErr)
			}
		}},
		{"malformed-body", "/v1/messages", `{"model":"c@malformed"}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			if json.Valid(a.body) || !a.complete() || !x.Response.Malformed {
				t.Errorf("body %s", a.body)
			}
		}},
		{"malformed-stream", "/v1/chat/completions", `{"model":"m@malformed=1","stream":true}`, false, 200, func(t *testing.T, a answer, x modelspec.Exchange) {
			if json.Valid([]byte(a.events[1].data)) || !json.Valid([]byte(a.events[2].data)) {
				t.Errorf("events %+v", a.events)
			}
		}},
		{"bad-json", "/v1/chat/completions", `{"model":`, false, 400, func(t *testing.T, a answer, x modelspec.Exchange) {
			if x.Request.Valid || x.Response.ErrorType != "invalid_request_error" {
				t.Errorf("recorded %+v", x)
			}
		}},
		{"bad-option", "/v1/chat/completions", `{"model":"m@nonsense=1"}`, false, 400, func(t *testing.T, a answer, x modelspec.Exchange) {
			if !strings.Contains(string(a.body), "nonsense") {
				t.Errorf("body %s", a.body)
			}
		}},
		{"unknown-path", "/v1/images/generations", `{}`, false, 404, func(t *testing.T, a answer, x modelspec.Exchange) {
			if x.API != "" {
				t.Errorf("recorded API %q", x.API)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, base := ts.client(tc.tls, false)
			since := ts.s.seq
			a := post(t, c, base+tc.path, tc.body)
			if a.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", a.status, tc.wantStatus, a.body)
			}
			xs := ts.stats(t, since)
			if len(xs) != 1 || xs[0].Response.Status != tc.wantStatus {
				t.Fatalf("recorded %+v", xs)
			}
			tc.check(t, a, xs[0])
		})
	}
}

// TestOptionsHeader: the header overrides the model's options, and the
// echoed model is the name before '@'.
func TestOptionsHeader(t *testing.T) {
	ts := startServer(t, true)
	c, base := ts.client(false, false)
	since := ts.s.seq
	a := post(t, c, base+"/v1/chat/completions", `{"model":"gpt-x@chunks=2,id=a"}`, modelspec.OptionsHeader, "id=b,rmodel=gpt-x-0613")
	m := jsonOf(t, string(a.body))
	if path(m, "id") != "b" || path(m, "model") != "gpt-x-0613" || path(m, "choices.0.message.content") != "tok0 tok1 " {
		t.Errorf("body %s", a.body)
	}
	x := ts.stats(t, since)[0]
	if x.Headers[strings.ToLower(modelspec.OptionsHeader)] != "id=b,rmodel=gpt-x-0613" || x.Request.Model != "gpt-x@chunks=2,id=a" || x.Response.Model != "gpt-x-0613" {
		t.Errorf("recorded %+v", x)
	}
}

// TestHTTP1Only: with HTTP/2 off, TLS clients that offer h2 get HTTP/1.1.
func TestHTTP1Only(t *testing.T) {
	ts := startServer(t, false)
	c, base := ts.client(true, false)
	if a := post(t, c, base+"/v1/chat/completions", `{"model":"m"}`); a.proto != "HTTP/1.1" || a.status != 200 {
		t.Errorf("proto %s status %d", a.proto, a.status)
	}
}

// TestSilentClient: a connection that sends nothing does not hold up
// others (the first byte is awaited per connection).
func TestSilentClient(t *testing.T) {
	ts := startServer(t, true)
	silent, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, base := ts.client(true, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader([]byte(`{"model":"m"}`)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestStatsEndpoint: /_stats serves the exchanges after ?since.
func TestStatsEndpoint(t *testing.T) {
	ts := startServer(t, true)
	c, base := ts.client(false, false)
	for range 3 {
		post(t, c, base+"/v1/embeddings", `{"model":"e","input":"x"}`)
	}
	resp, err := c.Get(base + modelspec.StatsPath + "?since=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st modelspec.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Exchanges) != 2 || st.Exchanges[0].Seq != 2 || st.Exchanges[1].API != modelspec.OpenAIEmbeddings {
		t.Errorf("stats %+v", st)
	}
}

// TestDump: with a dump directory, each exchange's bodies are written as
// sent, the request's and the stream's events byte for byte.
func TestDump(t *testing.T) {
	ts := startServer(t, true)
	ts.s.dump = t.TempDir()
	c, base := ts.client(false, false)
	body := `{"messages":[],"model":"m@chunks=2","stream":true}`
	a := post(t, c, base+"/v1/chat/completions", body)
	x := ts.stats(t, 0)[0]
	req, err1 := os.ReadFile(filepath.Join(ts.s.dump, "1.request"))
	resp, err2 := os.ReadFile(filepath.Join(ts.s.dump, "1.response"))
	if err1 != nil || err2 != nil || string(req) != body || len(resp) != x.Response.Bytes {
		t.Fatalf("dump: %v %v request %q, response %d bytes, recorded %d", err1, err2, req, len(resp), x.Response.Bytes)
	}
	if !strings.HasPrefix(string(resp), "data: {") || !strings.HasSuffix(string(resp), "data: [DONE]\n\n") || len(a.events) != 5 {
		t.Errorf("response %q", resp)
	}
}
