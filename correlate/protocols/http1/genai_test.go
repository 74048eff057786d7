package http1

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// captured is a segment as the kernel path gives it today: its first
// prototest.Capture bytes, with its whole length.
func captured(dir protocols.Dir, fd int32, at int, data string) *rec {
	d := sock(dir, fd, at, data)
	d.Data = d.Data[:min(len(d.Data), prototest.Capture)]
	return d
}

// bodyWriteData is a later write of a response body with its bytes, as a
// capture that copies a model call's body gives it.
func bodyWriteData(fd int32, at int, data string) *rec {
	d := sock(protocols.WriteBody, fd, at, data)
	d.Tail = tail(data)
	return d
}

func chatRequest(body string) string {
	return fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: model:8000\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(body), body)
}

func sseEvent(delta string) string {
	return `data: {"id":"chatcmpl-P","object":"chat.completion.chunk","model":"gpt-test-0613","choices":[{"index":0,"delta":` + delta +
		`,"finish_reason":null}]}` + "\n\n"
}

// TestGenAIServerToday: a model server traced from the kernel as the
// capture is today (a request's first bytes, body writes without their
// bytes): the span is a GenAI one with what the request showed, marked cut
// where the capture saw nothing, and it ends with the stream's last write.
func TestGenAIServerToday(t *testing.T) {
	k := newTestConns()
	body := `{"model":"gpt-test","messages":[{"role":"user","content":"zt-canary-1"}],"stream":true,"max_tokens":32}`
	k.handle(captured(protocols.Read, 3, 0, chatRequest(body)))
	k.handle(captured(protocols.Write, 3, 80, "HTTP/1.0 200 OK\r\nServer: py\r\nContent-Type: text/event-stream\r\n\r\n"))
	for i := range 5 {
		k.handle(bodyWrite(3, 90+10*i, sseEvent(`{"content":"w"}`)))
	}
	spans := k.handleAll(&rec{fd: 3, Segment: protocols.Segment{Dir: closeConn}})
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	g := s.GenAI
	if g == nil || s.Name != "chat gpt-test" || s.Kind != trace.SpanKindServer || s.End.Sub(s.Start) != 130*time.Millisecond {
		t.Fatalf("span %q kind %v duration %v genai %+v", s.Name, s.Kind, s.End.Sub(s.Start), g)
	}
	if !g.Stream || g.MaxTokens != 32 || g.Cut != model.GenAICutResponse || g.End != model.GenAIEndClosed || g.ErrorType != "" {
		t.Errorf("exchange %+v", g)
	}
	if attr(s, "gen_ai.request.model") != "gpt-test" || attr(s, "zerotrace.gen_ai.body.truncated") != "response" ||
		attr(s, "gen_ai.provider.name") != "openai" {
		t.Errorf("attributes %v", s.Attributes)
	}
	for _, kv := range s.Attributes {
		if strings.Contains(kv.Value.Emit(), "zt-canary") {
			t.Errorf("content exported: %s", kv.Key)
		}
	}
}

// TestGenAIServerStream: with the body writes' bytes (a capture that
// copies a model call's body), a chunked stream gives its chunks, first
// token, usage and end.
func TestGenAIServerStream(t *testing.T) {
	k := newTestConns()
	body := `{"messages":[{"content":"hi","role":"user"}],"model":"gpt-test","stream_options":{"include_usage":true},"stream":true}`
	k.handle(sock(protocols.Read, 3, 0, chatRequest(body)))
	k.handle(sock(protocols.Write, 3, 80, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
	events := []string{sseEvent(`{"role":"assistant","content":""}`), sseEvent(`{"content":"Hel"}`), sseEvent(`{"content":"lo"}`),
		`data: {"id":"chatcmpl-P","object":"chat.completion.chunk","model":"gpt-test-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n",
		`data: {"id":"chatcmpl-P","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}` + "\n\n",
		"data: [DONE]\n\n"}
	var s *model.Span
	for i, e := range events {
		chunk := fmt.Sprintf("%x\r\n%s\r\n", len(e), e)
		if i == len(events)-1 {
			chunk += "0\r\n\r\n"
		}
		// Split the chunk's framing from its data now and then, as
		// writes may.
		if i%2 == 1 {
			k.handle(bodyWriteData(3, 90+10*i, chunk[:3]))
			s = k.handle(bodyWriteData(3, 90+10*i, chunk[3:]))
		} else {
			s = k.handle(bodyWriteData(3, 90+10*i, chunk))
		}
	}
	if s == nil || s.GenAI == nil {
		t.Fatalf("no GenAI span at the stream's end: %+v", s)
	}
	g := s.GenAI
	if g.Chunks != 5 || g.ContentChunks != 2 || g.FirstChunk.Sub(s.Start) != 90*time.Millisecond ||
		g.FirstToken.Sub(s.Start) != 100*time.Millisecond || g.Usage.Input != 7 || g.Usage.Output != 2 ||
		g.End != model.GenAIEndDone || g.Cut != 0 || g.ResponseModel != "gpt-test-0613" || g.NFinish != 1 {
		t.Errorf("exchange %+v", g)
	}
	if s.End.Sub(s.Start) != 140*time.Millisecond || attr(s, "gen_ai.response.time_to_first_chunk") != "0.09" {
		t.Errorf("duration %v, ttfc %s", s.End.Sub(s.Start), attr(s, "gen_ai.response.time_to_first_chunk"))
	}
}

// TestGenAIClient: a client's call, its request and answer each in one
// segment: the whole exchange; the same with a request body longer than
// the capture: cut, the model still read.
func TestGenAIClient(t *testing.T) {
	k := newTestConns()
	req := "POST /api/chat HTTP/1.1\r\nHost: ollama:11434\r\nContent-Length: 74\r\n\r\n" +
		`{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"stream":false}`[:74]
	resp := `{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"y"},"done_reason":"stop",` +
		`"done":true,"total_duration":1,"prompt_eval_count":12,"eval_count":3}`
	k.handle(sock(protocols.Write, 5, 0, req))
	s := k.handle(sock(protocols.Read, 5, 40, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s", len(resp), resp)))
	if s == nil || s.GenAI == nil || s.Kind != trace.SpanKindClient || s.Name != "chat llama3.2" {
		t.Fatalf("span %+v", s)
	}
	g := s.GenAI
	if g.Provider != "ollama" || g.Stream || g.Usage.Input != 12 || g.Usage.Output != 3 || g.End != model.GenAIEndDone || g.Cut != 0 {
		t.Errorf("exchange %+v", g)
	}

	big := `{"model":"llama3.2","messages":[{"role":"user","content":"` + strings.Repeat("z", 5000) + `"}]}`
	k.handle(captured(protocols.Write, 5, 100, fmt.Sprintf("POST /api/chat HTTP/1.1\r\nHost: ollama:11434\r\nContent-Length: %d\r\n\r\n%s", len(big), big)))
	s = k.handle(captured(protocols.Read, 5, 200, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{\"error\":\"out of mem\"}"))
	if s == nil || s.GenAI == nil {
		t.Fatalf("span %+v", s)
	}
	g = s.GenAI
	if g.RequestModel != "llama3.2" || g.Cut != model.GenAICutRequest || g.ErrorType != "500" || g.ErrorMessage != "out of mem" ||
		s.Status != codes.Error || attr(s, "error.type") != "500" {
		t.Errorf("cut request: %+v status %v", g, s.Status)
	}
}

// TestGenAINotACall: a POST to another path, and a recognised path whose
// body is not JSON, make plain HTTP spans.
func TestGenAINotACall(t *testing.T) {
	k := newTestConns()
	k.handle(sock(protocols.Read, 3, 0, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n\r\na=b"))
	s := k.handle(sock(protocols.Write, 3, 5, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
	if s == nil || s.GenAI != nil || s.Name != "POST" {
		t.Errorf("form body: %+v", s)
	}
	k.handle(sock(protocols.Read, 3, 10, "POST /v1/other HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"))
	if s := k.handle(sock(protocols.Write, 3, 15, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")); s == nil || s.GenAI != nil {
		t.Errorf("other path: %+v", s)
	}
}

func TestDechunk(t *testing.T) {
	body := "5;ext=1\r\nhello\r\n0a\r\n0123456789\r\n0\r\n\r\n"
	for step := 1; step <= len(body); step++ {
		var d Dechunk
		d.chunked = true
		var got strings.Builder
		for i := 0; i < len(body); i += step {
			d.Feed([]byte(body[i:min(i+step, len(body))]), func(b []byte) { got.Write(b) })
		}
		if got.String() != "hello0123456789" || d.state != chunkTrail {
			t.Fatalf("step %d: %q state %d", step, got.String(), d.state)
		}
	}
}

// FuzzGenAI: a model call's segments, whatever they hold, with body
// writes carrying their bytes: no panic, one span at most, nothing left.
func FuzzGenAI(f *testing.F) {
	f.Add([]byte(chatRequest(`{"model":"m","stream":true}`)), []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"),
		[]byte("1f\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n\r\n0\r\n\r\n"), uint16(7))
	f.Add([]byte("POST /api/generate HTTP/1.1\r\nContent-Length: 30\r\n\r\n{\"model\":\"m\"}"), []byte("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{\"response\":\"a\"}\n"),
		[]byte("{\"done\":true,\"eval_count\":1}\n"), uint16(3))
	f.Fuzz(func(t *testing.T, req, resp, body []byte, split uint16) {
		k := newTestConns()
		cut := int(split) % (len(body) + 1)
		var spans []*model.Span
		for _, d := range []*rec{
			{fd: 3, Segment: protocols.Segment{Dir: protocols.Read, Data: req[:min(len(req), prototest.Capture)], Len: uint32(len(req))}},
			{fd: 3, Segment: protocols.Segment{Dir: protocols.ReadMore, Data: req, Len: uint32(len(req))}},
			{fd: 3, Segment: protocols.Segment{Dir: protocols.Write, Data: resp, Len: uint32(len(resp)), Tail: tail(string(resp))}},
			{fd: 3, Segment: protocols.Segment{Dir: protocols.WriteBody, Data: body[:cut], Len: uint32(cut), Tail: tail(string(body[:cut]))}},
			{fd: 3, Segment: protocols.Segment{Dir: protocols.WriteBody, Data: body[cut:], Len: uint32(len(body) - cut), Tail: tail(string(body[cut:]))}},
			{fd: 3, Segment: protocols.Segment{Dir: closeConn}},
		} {
			spans = append(spans, k.handleAll(d)...)
		}
		if len(spans) > 1 {
			t.Fatalf("%d spans for one request", len(spans))
		}
		for _, s := range spans {
			if s.Name == "" || s.GenAI != nil && s.HTTP == nil {
				t.Fatalf("span %q", s.Name)
			}
		}
		if len(k.conns) != 0 || len(k.proc.Serving) != 0 {
			t.Fatalf("state left after close")
		}
	})
}

// TestGenAIRequestTail: a request body longer than the capture, its model
// after the prompt as the Go SDKs write it: the read's tail gives the
// model, whether it follows a gap or continues the record's bytes, and
// also when the body came in several reads.
func TestGenAIRequestTail(t *testing.T) {
	for _, c := range []struct {
		name   string
		prompt int
		reads  int
	}{{"gap", 5000, 1}, {"contiguous", 400, 1}, {"several reads", 20000, 3}} {
		k := newTestConns()
		body := `{"messages":[{"content":"` + strings.Repeat("p", c.prompt) + `","role":"user"}],"model":"gpt-test","stream":true}`
		req := chatRequest(body)
		size := (len(req) + c.reads - 1) / c.reads
		for i := 0; i < len(req); i += size {
			part := req[i:min(i+size, len(req))]
			dir := protocols.Read
			if i > 0 {
				dir = protocols.ReadMore
			}
			d := captured(dir, 3, i, part)
			if len(part) > prototest.Capture {
				d.End = []byte(part[len(part)-min(len(part)-prototest.Capture, prototest.Capture):])
			}
			k.handle(d)
		}
		s := k.handle(sock(protocols.Write, 3, 100, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
		if s == nil || s.GenAI == nil {
			t.Fatalf("%s: span %+v", c.name, s)
		}
		wantCut := model.GenAICutRequest
		if c.name == "contiguous" {
			wantCut = 0
		}
		if g := s.GenAI; g.RequestModel != "gpt-test" || !g.Stream || g.Cut != wantCut {
			t.Errorf("%s: model %q stream %v cut %v", c.name, g.RequestModel, g.Stream, g.Cut)
		}
	}
}

// readBody is a read of a model call's answer by its caller, with its
// bytes, as the kernel path reports it.
func readBody(fd int32, at int, data string) *rec {
	d := sock(protocols.ReadBody, fd, at, data)
	d.Tail = tail(data)
	return d
}

// TestGenAIClientStream: a caller reading a streamed answer (the kernel
// path reports the reads of a model call's answer): the span stays open
// until the read that brings the stream's last event, with its first
// token, usage and end; a stream cut by the close ends at its last read,
// failed; a read longer than the capture, its end copied apart, still
// gives the stream's last events.
func TestGenAIClientStream(t *testing.T) {
	events := []string{sseEvent(`{"role":"assistant","content":""}`), sseEvent(`{"content":"Hel"}`), sseEvent(`{"content":"lo"}`),
		`data: {"id":"chatcmpl-P","object":"chat.completion.chunk","model":"gpt-test-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n",
		`data: {"id":"chatcmpl-P","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}` + "\n\n",
		"data: [DONE]\n\n"}
	chunk := func(e string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(e), e) }
	body := `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

	k := newTestConns()
	k.handle(sock(protocols.Write, 4, 0, chatRequest(body)))
	if s := k.handle(sock(protocols.Read, 4, 80, head)); s != nil {
		t.Fatalf("span at the response head: %q", s.Name)
	}
	var s *model.Span
	for i, e := range events {
		if s != nil {
			t.Fatalf("span before the last event")
		}
		s = k.handle(readBody(4, 90+10*i, chunk(e)))
	}
	if s == nil || s.GenAI == nil || s.Kind != trace.SpanKindClient {
		t.Fatalf("no client span at [DONE]: %+v", s)
	}
	g := s.GenAI
	if s.End.Sub(s.Start) != 140*time.Millisecond || g.FirstToken.Sub(s.Start) != 100*time.Millisecond || g.Usage.Input != 7 ||
		g.Usage.Output != 2 || g.End != model.GenAIEndDone || g.Cut != 0 || g.ResponseModel != "gpt-test-0613" {
		t.Errorf("span lasts %v, exchange %+v", s.End.Sub(s.Start), g)
	}
	// The chunked framing's end, read after [DONE], belongs to nothing.
	if s := k.handle(readBody(4, 160, "0\r\n\r\n")); s != nil {
		t.Errorf("a span for the framing's end: %q", s.Name)
	}

	// Cut: two events, then the close.
	k.handle(sock(protocols.Write, 4, 200, chatRequest(body)))
	k.handle(sock(protocols.Read, 4, 280, head+chunk(events[0])))
	k.handle(readBody(4, 290, chunk(events[1])))
	spans := k.handleAll(&rec{fd: 4, Segment: protocols.Segment{Dir: closeConn}})
	if len(spans) != 1 || spans[0].GenAI == nil {
		t.Fatalf("cut: %d spans", len(spans))
	}
	s = spans[0]
	if s.End.Sub(s.Start) != 90*time.Millisecond || s.GenAI.ErrorType != "stream_cut" || s.Status != codes.Error {
		t.Errorf("cut: span lasts %v, exchange %+v", s.End.Sub(s.Start), s.GenAI)
	}

	// One read holds the whole stream, longer than the capture: its
	// first bytes and its last ones (End) give the first events and the
	// usage after the gap.
	k = newTestConns()
	k.handle(sock(protocols.Write, 4, 0, chatRequest(body)))
	var all strings.Builder
	for range 6 {
		all.WriteString(chunk(events[1]))
	}
	for _, e := range events[2:] {
		all.WriteString(chunk(e))
	}
	all.WriteString("0\r\n\r\n")
	whole := head + all.String()
	d := captured(protocols.Read, 4, 80, whole)
	d.Tail = tail(whole)
	d.End = []byte(whole[len(whole)-prototest.Capture:])
	s = k.handle(d)
	if s == nil || s.GenAI == nil {
		t.Fatalf("one long read: no span")
	}
	if g := s.GenAI; g.Usage.Input != 7 || g.Usage.Output != 2 || g.Cut != model.GenAICutResponse || g.End != model.GenAIEndDone {
		t.Errorf("one long read: exchange %+v", g)
	}
}

// TestGenAIClientEveryByte: a feeder that sees every byte (TLS plaintext)
// gives a model call's request body and answer as plain writes and reads:
// the same span as from the kernel path's body records.
func TestGenAIClientEveryByte(t *testing.T) {
	body := `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"stream":true}`
	req := chatRequest(body)
	k := newTestConns()
	k.handle(sock(protocols.Write, 4, 0, req[:len(req)-len(body)]))
	k.handle(sock(protocols.Write, 4, 1, body))
	k.handle(sock(protocols.Read, 4, 80, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"))
	k.handle(sock(protocols.Read, 4, 90, sseEvent(`{"content":"Hel"}`)))
	s := k.handle(sock(protocols.Read, 4, 100, "data: [DONE]\n\n"))
	if s == nil || s.GenAI == nil || s.Name != "chat gpt-test" || !s.GenAI.Stream || s.End.Sub(s.Start) != 100*time.Millisecond ||
		s.GenAI.FirstToken.Sub(s.Start) != 90*time.Millisecond || s.GenAI.Cut != 0 {
		t.Fatalf("span %+v", s)
	}
}

// FuzzGenAIClient: a model call made, its answer read in two reads whose
// ends may be copied apart (End): no panic, one span at most, nothing
// left.
func FuzzGenAIClient(f *testing.F) {
	f.Add([]byte(chatRequest(`{"model":"m","stream":true}`)), []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"),
		[]byte("1f\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n\r\n0\r\n\r\n"), uint16(7), uint16(3))
	f.Add([]byte("POST /api/chat HTTP/1.1\r\nContent-Length: 30\r\n\r\n{\"model\":\"m\"}"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"message\":"),
		[]byte("{\"content\":\"a\"},\"done\":true,\"eval_count\":1}\n"), uint16(3), uint16(9))
	f.Fuzz(func(t *testing.T, req, resp, body []byte, split, end uint16) {
		k := newTestConns()
		cut := int(split) % (len(body) + 1)
		seg := func(dir protocols.Dir, b []byte) *rec {
			d := &rec{fd: 3, Segment: protocols.Segment{Dir: dir, Data: b[:min(len(b), prototest.Capture)], Len: uint32(len(b)), Tail: tail(string(b))}}
			if e := int(end) % (len(b) + 1); len(b) > prototest.Capture && e > 0 {
				d.End = b[len(b)-e:]
			}
			return d
		}
		var spans []*model.Span
		for _, d := range []*rec{
			seg(protocols.Write, req), seg(protocols.WriteMore, req), seg(protocols.Read, resp),
			seg(protocols.ReadBody, body[:cut]), seg(protocols.ReadBody, body[cut:]),
			{fd: 3, Segment: protocols.Segment{Dir: closeConn}},
		} {
			spans = append(spans, k.handleAll(d)...)
		}
		if len(spans) > 1 {
			t.Fatalf("%d spans for one call", len(spans))
		}
		if len(k.conns) != 0 {
			t.Fatalf("state left after close")
		}
	})
}
