package correlate

import (
	"fmt"
	"strings"
	"testing"

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
