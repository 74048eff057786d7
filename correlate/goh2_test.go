package correlate

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// h2Records cuts the frames written to a connection into the body records
// the net/http client probe sends for a watched HTTP/2 connection: per
// write or read its first bytes (all of it within the copy budget, at least
// 64 bytes after it) and, when that did not hold it, its last KiB.
type h2Records struct {
	pid     uint32
	conn    uint64
	off     [2]int
	spent   [2]int
	buf     bytes.Buffer
	fr      *http2.Framer
	recs    []*GoBody
	noLimit bool
}

func newH2Records() *h2Records {
	r := &h2Records{pid: 7, conn: 0xc0de}
	r.fr = http2.NewFramer(&r.buf, nil)
	return r
}

// flush turns what was framed since the last flush into one write (or
// read) at t.
func (r *h2Records) flush(write bool, t time.Time) {
	p := append([]byte(nil), r.buf.Bytes()...)
	r.buf.Reset()
	d := 0
	if !write {
		d = 1
	}
	budget := []int{16 << 10, 256 << 10}[d]
	head := max(budget-r.spent[d], 64)
	head = min(head, len(p), 4096)
	b := GoBody{PID: r.pid, Conn: r.conn, Time: t, Offset: uint64(r.off[d]), Total: uint32(len(p)), Write: write, H2: true}
	c := b
	c.Data = p[:head]
	r.recs = append(r.recs, &c)
	if head < len(p) {
		c := b
		c.Tail = true
		c.Data = p[len(p)-min(1024, len(p)-head):]
		r.recs = append(r.recs, &c)
	}
	r.off[d] += len(p)
	r.spent[d] += len(p)
}

func (r *h2Records) feed(c *Correlator) []*model.Span {
	var spans []*model.Span
	for _, b := range r.recs {
		spans = append(spans, c.HandleAll(b)...)
	}
	r.recs = nil
	return spans
}

func h2Attrs(s *model.Span) map[string]string {
	a := map[string]string{}
	for _, kv := range s.Attributes {
		a[string(kv.Key)] = kv.Value.Emit()
	}
	return a
}

func h2RoundTrip(span trace.SpanID, start, end time.Time) *GoModelCall {
	rt := model.NewSpan()
	rt.UseHTTP().Method = "POST"
	rt.HTTP.Path = "/v1/chat/completions"
	rt.HTTP.Status = 200
	rt.Kind = trace.SpanKindClient
	rt.PID, rt.Start, rt.End = 7, start, end
	rt.SetIDs(model.SpanIDs{TraceID: trace.TraceID{9}, SpanID: span})
	return &GoModelCall{Span: rt}
}

// TestGoModelCallH2: two model calls on one HTTP/2 connection joined
// mid-way (its header blocks cannot be decoded), told apart by their
// stream IDs: a stream whose 2 MB request names its model after the
// prompt, read as its last bytes, and a stream whose span came after its
// end. Each span gets its GenAI exchange and ends with its stream's last
// frame; another stream on the connection is nobody's.
func TestGoModelCallH2(t *testing.T) {
	c := New(slog.Default(), nil)
	c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := newH2Records()
	span1, span2 := trace.SpanID{1}, trace.SpanID{2}

	// Stream 3: a 2 MB prompt, the model last, written in 16 KiB frames.
	c.HandleAll(&GoH2Stream{PID: 7, Conn: r.conn, SpanID: span1, StreamID: 3, Time: at(0), Path: "/v1/chat/completions"})
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0xbe, 0xbf, 0xc0}, EndHeaders: true})
	r.flush(true, at(0))
	body := `{"messages":[{"content":"` + strings.Repeat("q", 2<<20) + `","role":"user"}],"model":"gpt-big","stream":true}`
	for off := 0; off < len(body); off += 16 << 10 {
		end := min(off+16<<10, len(body))
		r.fr.WriteData(3, end == len(body), []byte(body[off:end]))
		r.flush(true, at(1))
	}
	// Stream 5, not a model call, interleaved.
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x82}, EndHeaders: true, EndStream: true})
	r.flush(true, at(2))
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x88}, EndHeaders: true})
	r.fr.WriteData(3, false, []byte(`data: {"id":"c1","model":"gpt-big-1","choices":[{"delta":{"role":"assistant","content":"a"},"finish_reason":null}]}`+"\n\n"))
	r.flush(false, at(80))
	if spans := r.feed(c); len(spans) != 0 {
		t.Fatalf("%d spans before any ended", len(spans))
	}
	if spans := c.HandleAll(h2RoundTrip(span1, t0, at(81))); len(spans) != 0 {
		t.Fatalf("%d spans when the round trip returned, before its stream ended", len(spans))
	}
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}, EndHeaders: true, EndStream: true})
	r.fr.WriteData(3, false, []byte(`data: {"id":"c1","model":"gpt-big-1","choices":[{"delta":{"content":"b"},"finish_reason":"stop"}]}`+"\n\n"))
	r.flush(false, at(90))

	// Stream 7 starts while stream 3 still streams.
	c.HandleAll(&GoH2Stream{PID: 7, Conn: r.conn, SpanID: span2, StreamID: 7, Time: at(95), Path: "/v1/chat/completions"})
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: []byte{0xbe, 0xbf, 0xc0}, EndHeaders: true})
	r.fr.WriteData(7, true, []byte(`{"messages":[{"content":"hi","role":"user"}],"model":"gpt-small"}`))
	r.flush(true, at(95))
	r.fr.WriteData(3, false, []byte(`data: {"id":"c1","model":"gpt-big-1","choices":[],"usage":{"prompt_tokens":700,"completion_tokens":2}}`+"\n\ndata: [DONE]\n\n"))
	r.fr.WriteData(3, true, nil)
	r.flush(false, at(100))
	spans := r.feed(c)
	if len(spans) != 1 {
		t.Fatalf("%d spans once stream 3 ended, want 1", len(spans))
	}
	s := spans[0]
	a := h2Attrs(s)
	if s.Name != "chat gpt-big" || a["gen_ai.response.model"] != "gpt-big-1" || a["gen_ai.usage.input_tokens"] != "700" ||
		a["gen_ai.usage.output_tokens"] != "2" || a["gen_ai.response.finish_reasons"] != `["stop"]` {
		t.Errorf("stream 3: span %q %v", s.Name, a)
	}
	if s.End != at(100) {
		t.Errorf("stream 3: span ends %v after its start, want 100ms (its last frame)", s.End.Sub(t0))
	}

	// Stream 7's answer, read before its round trip's record came.
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: []byte{0x88}, EndHeaders: true})
	r.fr.WriteData(7, true, []byte(`{"id":"c2","model":"gpt-small-1","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}`))
	r.flush(false, at(120))
	if spans := r.feed(c); len(spans) != 0 {
		t.Fatalf("%d spans before stream 7's round trip came", len(spans))
	}
	spans = c.HandleAll(h2RoundTrip(span2, at(95), at(119)))
	if len(spans) != 1 {
		t.Fatalf("%d spans once stream 7's round trip came, want 1", len(spans))
	}
	s = spans[0]
	a = h2Attrs(s)
	if s.Name != "chat gpt-small" || a["gen_ai.usage.input_tokens"] != "5" || a["gen_ai.response.finish_reasons"] != `["length"]` {
		t.Errorf("stream 7: span %q %v", s.Name, a)
	}
	if s.End != at(120) {
		t.Errorf("stream 7: span ends at %v, want 120ms", s.End.Sub(t0))
	}
	if len(c.goCalls.byID) != 0 || len(c.goCalls.h2[goConnKey{7, r.conn}].calls) != 0 {
		t.Errorf("calls left: %d, on the connection %d", len(c.goCalls.byID), len(c.goCalls.h2[goConnKey{7, r.conn}].calls))
	}
}

// TestGoModelCallH2Reset: a stream the server resets mid-way ends its
// span there, as a cut stream.
func TestGoModelCallH2Reset(t *testing.T) {
	c := New(slog.Default(), nil)
	c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := newH2Records()
	c.HandleAll(&GoH2Stream{PID: 7, Conn: r.conn, SpanID: trace.SpanID{1}, StreamID: 1, Time: at(0), Path: "/v1/chat/completions"})
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xbe}, EndHeaders: true})
	r.fr.WriteData(1, true, []byte(`{"model":"gpt-test","messages":[],"stream":true}`))
	r.flush(true, at(0))
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	r.fr.WriteData(1, false, []byte(`data: {"id":"c1","model":"gpt-test","choices":[{"delta":{"content":"a"},"finish_reason":null}]}`+"\n\n"))
	r.flush(false, at(20))
	r.feed(c)
	c.HandleAll(h2RoundTrip(trace.SpanID{1}, t0, at(21)))
	r.fr.WriteRSTStream(1, http2.ErrCodeInternal)
	r.flush(false, at(30))
	spans := r.feed(c)
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	if a := h2Attrs(spans[0]); a["error.type"] != "stream_cut" || spans[0].End != at(30) {
		t.Errorf("span ends at %v, %v", spans[0].End.Sub(t0), a)
	}
}

// TestGoModelCallH2Reused: a connection closed and another one opened at
// the same address (its *tls.Conn's memory reused) starts again from
// stream 1: it is followed as a new connection, and the call left open on
// the first one ends there.
func TestGoModelCallH2Reused(t *testing.T) {
	c := New(slog.Default(), nil)
	c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := newH2Records()
	c.HandleAll(&GoH2Stream{PID: 7, Conn: r.conn, SpanID: trace.SpanID{1}, StreamID: 5, Time: at(0), Path: "/v1/chat/completions"})
	c.HandleAll(h2RoundTrip(trace.SpanID{1}, t0, at(10)))
	// The connection's bytes were never seen: it ends, without GenAI,
	// when a stream 1 comes at its address.
	spans := c.HandleAll(&GoH2Stream{PID: 7, Conn: r.conn, SpanID: trace.SpanID{2}, StreamID: 1, Time: at(20), Path: "/v1/chat/completions"})
	if len(spans) != 1 || spans[0].SpanID != (trace.SpanID{1}) || spans[0].GenAI != nil {
		t.Fatalf("spans %v when the address was reused, want the first call's, plain", spans)
	}
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xbe}, EndHeaders: true})
	r.fr.WriteData(1, true, []byte(`{"model":"gpt-two","messages":[]}`))
	r.flush(true, at(20))
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	r.fr.WriteData(1, true, []byte(`{"id":"c2","model":"gpt-two","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}`))
	r.flush(false, at(30))
	r.feed(c)
	spans = c.HandleAll(h2RoundTrip(trace.SpanID{2}, at(20), at(30)))
	if len(spans) != 1 || spans[0].Name != "chat gpt-two" {
		t.Fatalf("spans %v, want the second call's", spans)
	}
}

// BenchmarkGoModelCallH2: what the correlator spends on one streamed Go
// model call over HTTP/2 (a 1 KiB request, 8 SSE events in 4 reads, on a
// connection that carries one call after another), from its stream record
// and body records to its finished span; the frames are made outside the
// timer.
func BenchmarkGoModelCallH2(b *testing.B) {
	c := New(slog.Default(), nil)
	c.Register(model.NewProcess(7, "/app", "app", "go1.26"))
	t0 := time.Unix(1000, 0)
	r := newH2Records()
	body := []byte(`{"messages":[{"content":"` + strings.Repeat("q", 900) + `","role":"user"}],"model":"gpt-test","stream":true}`)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := uint32(2*i + 1)
		span := trace.SpanID{1, byte(i), byte(i >> 8), byte(i >> 16), 1}
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte{0xbe, 0xbf}, EndHeaders: true})
		r.fr.WriteData(id, true, body)
		r.flush(true, t0)
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte{0x88}, EndHeaders: true})
		for k := range 8 {
			r.fr.WriteData(id, false, fmt.Appendf(nil, `data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"content":"tok%d"},"finish_reason":null}]}`+"\n\n", k))
			if k%2 == 1 {
				if k == 7 {
					r.fr.WriteData(id, true, []byte("data: [DONE]\n\n"))
				}
				r.flush(false, t0.Add(time.Duration(80+10*k)*time.Millisecond))
			}
		}
		recs := r.recs
		r.recs = nil
		rt := h2RoundTrip(span, t0, t0.Add(81*time.Millisecond))
		b.StartTimer()
		n := len(c.HandleAll(&GoH2Stream{PID: 7, Conn: r.conn, SpanID: span, StreamID: id, Time: t0, Path: "/v1/chat/completions"}))
		n += len(c.HandleAll(recs[0]))
		n += len(c.HandleAll(recs[1]))
		n += len(c.HandleAll(rt))
		for _, rec := range recs[2:] {
			n += len(c.HandleAll(rec))
		}
		if n != 1 {
			b.Fatalf("%d spans", n)
		}
		rt.Span.Release()
	}
}
