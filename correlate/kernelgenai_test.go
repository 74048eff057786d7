package correlate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
)

// TestKernelGenAIRecords: a model server's records as the kernel path
// sends them for a model call (a request read longer than a record, its
// tail first, response body writes with their bytes) make one GenAI server
// span, named after the call, with the model from the body's end and the
// usage from the stream.
func TestKernelGenAIRecords(t *testing.T) {
	k := newTestKernel(&Stats{})
	body := `{"messages":[{"content":"` + strings.Repeat("q", 3000) + `","role":"user"}],"model":"gpt-test","stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// The read's tail comes first, in a record of its own.
	rt := sock(SockReadTail, 4, 0, req[len(req)-prototest.Capture:])
	rt.Len = uint32(len(req))
	k.handle(rt)
	read := sock(SockRead, 4, 0, req[:prototest.Capture])
	read.Len = uint32(len(req))
	k.handle(read)
	k.handle(sock(SockWrite, 4, 80, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 999999\r\n\r\n"))
	s := k.handle(bodyData(4, 90, `data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"content":"a"},"finish_reason":null}]}`+"\n\n"))
	if s != nil {
		t.Fatalf("span before the stream's end: %v", s.Name)
	}
	k.handle(bodyData(4, 100, `data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":700,"completion_tokens":1}}`+"\n\n"))
	k.handle(bodyData(4, 110, "data: [DONE]\n\n"))
	spans := conv(k.kernelTracer.handle(sock(SockClose, 4, 120, "")))
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s = spans[0]
	a := map[string]string{}
	for _, kv := range s.Attributes {
		a[string(kv.Key)] = kv.Value.Emit()
	}
	if s.Name != "chat gpt-test" || a["gen_ai.response.model"] != "gpt-test-1" || a["gen_ai.usage.input_tokens"] != "700" ||
		a["gen_ai.usage.output_tokens"] != "1" || a["zerotrace.gen_ai.body.truncated"] != "request" || a["gen_ai.request.stream"] != "true" {
		t.Errorf("span %q %v", s.Name, a)
	}
}

// bodyData is a response body write with its bytes, as the kernel path
// sends a model call's.
func bodyData(fd int32, at int, data string) *SockData {
	d := sock(SockWriteBody, fd, at, data)
	d.Tail = tail(data)
	return d
}

// TestKernelGenAIClientRecords: a model call a process makes, as the
// kernel path sends it: the request write longer than a record (its tail
// in a record of its own, first), the response head read, and the body's
// reads (the last one long, its tail first). One CLIENT span, ended by the
// read that brought [DONE], with the usage from the tail; a tail record
// whose segment's record does not follow is dropped, not misplaced.
func TestKernelGenAIClientRecords(t *testing.T) {
	k := newTestKernel(&Stats{})
	body := `{"model":"gpt-test","messages":[{"content":"` + strings.Repeat("q", 3000) + `","role":"user"}],"stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	wt := sock(SockWriteTail, 5, 0, req[len(req)-prototest.Capture:])
	wt.Len = uint32(len(req))
	k.handle(wt)
	w := sock(SockWrite, 5, 0, req[:prototest.Capture])
	w.Len, w.Tail = uint32(len(req)), tail(req)
	k.handle(w)
	// A stray tail: another segment of the same thread, whose record was
	// lost.
	stray := sock(SockReadTail, 5, 10, `data: {"usage":{"prompt_tokens":999}}`)
	stray.Len = 5000
	k.handle(stray)
	if s := k.handle(sock(SockRead, 5, 80, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")); s != nil {
		t.Fatalf("span at the response head")
	}
	first := `data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{"content":"a"},"finish_reason":null}]}` + "\n\n"
	rb := sock(SockReadBody, 5, 90, first)
	rb.Tail = tail(first)
	if s := k.handle(rb); s != nil {
		t.Fatalf("span before the stream's end")
	}
	var long strings.Builder
	for range 20 {
		long.WriteString(first)
	}
	long.WriteString(`data: {"id":"c1","model":"gpt-test-1","choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":700,"completion_tokens":21}}` + "\n\n")
	long.WriteString("data: [DONE]\n\n")
	all := long.String()
	lt := sock(SockReadTail, 5, 120, all[len(all)-prototest.Capture:])
	lt.Len = uint32(len(all))
	k.handle(lt)
	last := sock(SockReadBody, 5, 120, all[:prototest.Capture])
	last.Len, last.Tail = uint32(len(all)), tail(all)
	s := k.handle(last)
	if s == nil || s.GenAI == nil {
		t.Fatalf("no span at [DONE]")
	}
	a := map[string]string{}
	for _, kv := range s.Attributes {
		a[string(kv.Key)] = kv.Value.Emit()
	}
	if s.Name != "chat gpt-test" || s.End.Sub(s.Start) != 120*time.Millisecond || a["gen_ai.usage.input_tokens"] != "700" ||
		a["gen_ai.usage.output_tokens"] != "21" || a["zerotrace.gen_ai.body.truncated"] != "request_and_response" {
		t.Errorf("span %q lasts %v: %v", s.Name, s.End.Sub(s.Start), a)
	}
	if len(k.ends) != 0 {
		t.Errorf("%d segment ends left", len(k.ends))
	}
}
