package correlate

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// goRecords cuts a request and a response into the body records the
// net/http client probe sends (HTTP/1.x, 4 KiB reads, and a head and tail
// when a write is longer than a record), the response's reads 10 ms apart
// after an 80 ms wait.
type goRecords struct {
	pid   uint32
	span  trace.SpanID
	start time.Time
	recs  []*GoBody
}

func (g *goRecords) add(write bool, at time.Duration, offset int, p string) {
	const most, tail = 4096, 1024
	head := min(len(p), most)
	if write && offset+head > 16<<10 {
		head = max(0, 16<<10-offset)
	}
	b := &GoBody{PID: g.pid, Conn: 0xc000, SpanID: g.span, Time: g.start.Add(at), Offset: uint64(offset), Total: uint32(len(p)), Write: write}
	if head > 0 {
		c := *b
		c.Data = []byte(p[:head])
		g.recs = append(g.recs, &c)
	}
	if head < len(p) {
		c := *b
		c.Tail = true
		c.Data = []byte(p[len(p)-min(tail, len(p)-head):])
		g.recs = append(g.recs, &c)
	}
}

// TestGoModelCallStream: a streamed chat call's span ends with the read
// that brought its last event, long after its head, with the model from
// the end of a 100 KiB request body (written past the copy budget) and the
// usage from the stream.
func TestGoModelCallStream(t *testing.T) {
	c := New(slog.Default(), nil)
	c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
	start := time.Unix(1000, 0)
	g := &goRecords{pid: 7, span: trace.SpanID{1, 2, 3}, start: start}

	body := `{"messages":[{"content":"` + strings.Repeat("q", 100<<10) + `","role":"user"}],"model":"gpt-test","stream_options":{"include_usage":true},"stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	off := 0
	for off < len(req) {
		n := min(32<<10, len(req)-off)
		if off == 0 {
			n = 4096
		}
		g.add(true, time.Millisecond, off, req[off:off+n])
		off += n
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	events := []string{
		`data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"role":"assistant","content":"a"},"finish_reason":null}]}` + "\n\n",
		`data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"content":"b"},"finish_reason":"stop"}]}` + "\n\n",
		`data: {"id":"c1","model":"gpt-test-1","choices":[],"usage":{"prompt_tokens":700,"completion_tokens":2}}` + "\n\n" + "data: [DONE]\n\n",
	}
	roff := 0
	read := func(at time.Duration, p string) {
		g.add(false, at, roff, p)
		roff += len(p)
	}
	read(80*time.Millisecond, head+fmt.Sprintf("%x\r\n%s\r\n", len(events[0]), events[0]))
	var spans []*model.Span
	for _, r := range g.recs {
		spans = append(spans, c.HandleAll(r)...)
	}
	// The round trip returns once the head came.
	rt := model.NewSpan()
	rt.UseHTTP().Method = "POST"
	rt.HTTP.Path = "/v1/chat/completions"
	rt.Kind = trace.SpanKindClient
	rt.PID, rt.Start, rt.End = 7, start, start.Add(81*time.Millisecond)
	rt.SetIDs(model.SpanIDs{TraceID: trace.TraceID{9}, SpanID: g.span})
	spans = append(spans, c.HandleAll(&GoModelCall{Span: rt})...)
	if len(spans) != 0 {
		t.Fatalf("%d spans before the stream ended", len(spans))
	}
	g.recs = nil
	read(90*time.Millisecond, fmt.Sprintf("%x\r\n%s\r\n", len(events[1]), events[1]))
	read(100*time.Millisecond, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(events[2]), events[2]))
	for _, r := range g.recs {
		spans = append(spans, c.HandleAll(r)...)
	}
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	a := map[string]string{}
	for _, kv := range s.Attributes {
		a[string(kv.Key)] = kv.Value.Emit()
	}
	if s.Name != "chat gpt-test" || a["gen_ai.response.model"] != "gpt-test-1" || a["gen_ai.usage.input_tokens"] != "700" ||
		a["gen_ai.usage.output_tokens"] != "2" || a["gen_ai.request.stream"] != "true" || a["gen_ai.response.finish_reasons"] != `["stop"]` {
		t.Errorf("span %q %v", s.Name, a)
	}
	if d := s.End.Sub(start); d != 100*time.Millisecond {
		t.Errorf("span ends %v after its start, want 100ms (the last read)", d)
	}
}

// TestGoModelCallEndsWithoutEvents: a streamed call whose stream stops
// mid-way ends at Tick, at its last read or its round trip's end, whichever
// is later, its end unknown (not a stream's end), when
// its process exits (at once) or when it has been idle for goCallIdle on
// the wall clock with no further event (the agent idle); until then Tick
// leaves it open.
func TestGoModelCallEndsWithoutEvents(t *testing.T) {
	for _, exit := range []bool{true, false} {
		c := New(slog.Default(), nil)
		c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
		start := time.Now().Add(-time.Second)
		g := &goRecords{pid: 7, span: trace.SpanID{4, 5, 6}, start: start}
		body := `{"model":"gpt-test","stream":true,"messages":[]}`
		g.add(true, time.Millisecond, 0, fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n", len(body))+body)
		ev := `data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"content":"a"},"finish_reason":null}]}` + "\n\n"
		g.add(false, 80*time.Millisecond, 0, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+fmt.Sprintf("%x\r\n%s\r\n", len(ev), ev))
		var spans []*model.Span
		for _, r := range g.recs {
			spans = append(spans, c.HandleAll(r)...)
		}
		rt := model.NewSpan()
		rt.UseHTTP().Method = "POST"
		rt.HTTP.Path = "/v1/chat/completions"
		rt.Kind = trace.SpanKindClient
		rt.PID, rt.Start, rt.End = 7, start, start.Add(81*time.Millisecond)
		rt.SetIDs(model.SpanIDs{TraceID: trace.TraceID{9}, SpanID: g.span})
		spans = append(spans, c.HandleAll(&GoModelCall{Span: rt})...)
		tick := func(now time.Time) {
			c.Tick(now, func(s *model.Span) { spans = append(spans, s) })
		}
		tick(time.Now())
		if len(spans) != 0 {
			t.Fatalf("exit %v: %d spans while the stream is open", exit, len(spans))
		}
		if exit {
			c.Unregister(7)
			tick(time.Now())
		} else {
			tick(time.Now().Add(goCallIdle / 2))
			if len(spans) != 0 {
				t.Fatalf("%d spans before the call was idle for %v", len(spans), goCallIdle)
			}
			tick(time.Now().Add(goCallIdle + 2*time.Minute))
		}
		if len(spans) != 1 {
			t.Fatalf("exit %v: %d spans, want 1", exit, len(spans))
		}
		s := spans[0]
		if d := s.End.Sub(start); d != 81*time.Millisecond {
			t.Errorf("exit %v: span ends %v after its start, want 81ms (the round trip's end)", exit, d)
		}
		if s.Process == nil || s.GenAI == nil || s.GenAI.End != model.GenAIEndUnknown || s.Name != "chat gpt-test" {
			t.Errorf("exit %v: span %q, process %v, GenAI %v", exit, s.Name, s.Process, s.GenAI)
		}
		if exit != (c.Processes() == 0) {
			t.Errorf("exit %v: %d processes known after the tick", exit, c.Processes())
		}
	}
}

// BenchmarkGoModelCall: what the correlator spends on one streamed Go
// model call (a 1 KiB request, an 8-event chunked stream read in 4
// reads), from its body records to its finished span.
func BenchmarkGoModelCall(b *testing.B) {
	c := New(slog.Default(), nil)
	c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
	start := time.Unix(1000, 0)
	body := `{"messages":[{"content":"` + strings.Repeat("q", 900) + `","role":"user"}],"model":"gpt-test","stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	for i := range 8 {
		ev := fmt.Sprintf(`data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"content":"tok%d"},"finish_reason":null}]}`+"\n\n", i)
		resp += fmt.Sprintf("%x\r\n%s\r\n", len(ev), ev)
	}
	last := "data: [DONE]\n\n"
	resp += fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(last), last)
	// The records, made once; each call gets copies with its own span.
	tmpl := &goRecords{pid: 7, start: start}
	tmpl.add(true, time.Millisecond, 0, req)
	q := len(resp) / 4
	for k := range 4 {
		end := (k + 1) * q
		if k == 3 {
			end = len(resp)
		}
		tmpl.add(false, time.Duration(80+10*k)*time.Millisecond, k*q, resp[k*q:end])
	}
	recs := make([]GoBody, len(tmpl.recs))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		g := &goRecords{pid: 7, span: trace.SpanID{1, byte(i), byte(i >> 8), byte(i >> 16), 1}, start: start}
		for k, r := range tmpl.recs {
			recs[k] = *r
			recs[k].SpanID = g.span
			g.recs = append(g.recs[:k], &recs[k])
		}
		rt := model.NewSpan()
		rt.UseHTTP().Method = "POST"
		rt.HTTP.Path = "/v1/chat/completions"
		rt.Kind = trace.SpanKindClient
		rt.PID, rt.Start, rt.End = 7, start, start.Add(81*time.Millisecond)
		rt.SetIDs(model.SpanIDs{TraceID: trace.TraceID{9}, SpanID: g.span})
		n := 0
		n += len(c.HandleAll(g.recs[0]))
		n += len(c.HandleAll(g.recs[1]))
		n += len(c.HandleAll(&GoModelCall{Span: rt}))
		for _, r := range g.recs[2:] {
			n += len(c.HandleAll(r))
		}
		if n != 1 {
			b.Fatalf("%d spans", n)
		}
		rt.Release()
	}
}
