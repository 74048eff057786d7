package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
)

// api is one wire shape: what its bodies, stream events and errors look
// like. The exchange drives timing, framing and the truth record.
type api interface {
	name() string
	// defaultStream is the stream flag when the request has none (Ollama
	// streams unless told not to).
	defaultStream() bool
	// embedding APIs never stream.
	embedding() bool
	// ndjson: one JSON document per line instead of server-sent events.
	ndjson() bool
	contentType(stream bool) string
	// ids are the response id and model the answer carries.
	ids(x *exchange) (id, model string)
	// body is a non-streamed answer, whether it reports usage and its
	// finish reasons.
	body(x *exchange) (body any, usage bool, finish []string)
	// opening events precede content; chunk(i) is content chunk i; closing
	// events end a stream (finish, usage, terminal event).
	opening(x *exchange) []event
	chunk(x *exchange, i int) []event
	closing(x *exchange) []event
	streamError(x *exchange, typ, msg string) event
	// errorType is the API's usual error type for an HTTP status;
	// errorBody its error document; recordedErrorType what the truth
	// records as the type (Ollama's errors have none).
	errorType(status int) string
	errorBody(x *exchange, status int, typ, msg string) any
	recordedErrorType(typ string) string
	// sentUsage is the part of the usage (exchange.usage) the API's
	// answers carry, for the truth record: the counts it has no field for
	// are zero.
	sentUsage(u modelspec.Usage) modelspec.Usage
}

// obj is a JSON object whose keys keep their order, so that every body is
// written the same way each time and in the order the real APIs use.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f.k)
		b = append(b, ':')
		v, err := marshal(f.v)
		if err != nil {
			return nil, err
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// --- OpenAI -----------------------------------------------------------------

// openAIErrorType follows what OpenAI's API answers: most client errors are
// invalid_request_error (told apart by code), 429 is "requests" with code
// rate_limit_exceeded, server errors are server_error.
func openAIErrorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "requests"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func openAIErrorCode(status int) any {
	switch status {
	case http.StatusUnauthorized:
		return "invalid_api_key"
	case http.StatusNotFound:
		return "model_not_found"
	case http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	}
	return nil
}

func openAIError(status int, typ, msg string) obj {
	return obj{{"error", obj{{"message", msg}, {"type", typ}, {"param", nil}, {"code", openAIErrorCode(status)}}}}
}

// openAIBase holds what the OpenAI shapes share.
type openAIBase struct{}

func (openAIBase) defaultStream() bool { return false }
func (openAIBase) embedding() bool     { return false }
func (openAIBase) ndjson() bool        { return false }
func (openAIBase) contentType(stream bool) string {
	if stream {
		return "text/event-stream; charset=utf-8"
	}
	return "application/json"
}
func (openAIBase) errorType(status int) string { return openAIErrorType(status) }
func (openAIBase) errorBody(_ *exchange, status int, typ, msg string) any {
	return openAIError(status, typ, msg)
}
func (openAIBase) recordedErrorType(typ string) string         { return typ }
func (openAIBase) sentUsage(u modelspec.Usage) modelspec.Usage { return u }
func (openAIBase) streamError(x *exchange, typ, msg string) event {
	return event{data: openAIError(http.StatusInternalServerError, typ, msg), errType: typ, errMsg: msg}
}

// openAIUsage is chat and completions usage: prompt_tokens includes the
// cached tokens, completion_tokens the reasoning tokens.
func openAIUsage(x *exchange) obj {
	u := x.usage()
	prompt := obj{{"cached_tokens", u.Cached}, {"audio_tokens", 0}}
	if u.CacheWrite > 0 {
		prompt = append(prompt, kv{"cache_write_tokens", u.CacheWrite})
	}
	return obj{
		{"prompt_tokens", u.Input}, {"completion_tokens", u.Output}, {"total_tokens", u.Input + u.Output},
		{"prompt_tokens_details", prompt},
		{"completion_tokens_details", obj{{"reasoning_tokens", u.Reasoning}, {"audio_tokens", 0},
			{"accepted_prediction_tokens", 0}, {"rejected_prediction_tokens", 0}}},
	}
}

// streamUsage says whether an OpenAI chat or completions stream ends with a
// usage chunk.
func streamUsage(x *exchange) bool {
	switch x.opts.Usage {
	case modelspec.UsageAlways:
		return true
	case modelspec.UsageNever:
		return false
	}
	return x.rec.Request.IncludeUsage
}

// openAIStreamTail is the end of a chat or completions stream: a chunk with
// the finish reasons, the usage chunk when asked for, and [DONE].
func openAIStreamTail(x *exchange, head func() obj, choice func(c int, finish string) obj) []event {
	n := x.choices()
	choices := make([]obj, n)
	finish := make([]string, n)
	for c := range n {
		finish[c] = x.finishReason(c, "stop")
		choices[c] = choice(c, finish[c])
	}
	withUsage := streamUsage(x)
	last := append(head(), kv{"choices", choices})
	if withUsage {
		last = append(last, kv{"usage", nil})
	}
	evs := []event{{data: last, finish: finish}}
	if withUsage {
		evs = append(evs, event{data: append(head(), kv{"choices", []obj{}}, kv{"usage", openAIUsage(x)}), usage: true})
	}
	return append(evs, event{data: "[DONE]", raw: true})
}

// openAIChat is POST …/chat/completions.
type openAIChat struct{ openAIBase }

func (openAIChat) name() string { return modelspec.OpenAIChat }

func (openAIChat) ids(x *exchange) (string, string) { return x.id("chatcmpl-zt-"), x.model }

func (a openAIChat) body(x *exchange) (any, bool, []string) {
	id, model := a.ids(x)
	n := x.choices()
	choices := make([]obj, n)
	finish := make([]string, n)
	for c := range n {
		finish[c] = x.finishReason(c, "stop")
		choices[c] = obj{{"index", c}, {"message", obj{{"role", "assistant"}, {"content", x.fullText()}, {"refusal", nil}, {"annotations", []obj{}}}},
			{"logprobs", nil}, {"finish_reason", finish[c]}}
	}
	b := obj{{"id", id}, {"object", "chat.completion"}, {"created", x.created}, {"model", model}, {"choices", choices}}
	withUsage := x.opts.Usage != modelspec.UsageNever
	if withUsage {
		b = append(b, kv{"usage", openAIUsage(x)})
	}
	b = append(b, kv{"service_tier", "default"}, kv{"system_fingerprint", "fp_zt"})
	return b, withUsage, finish
}

func (a openAIChat) chunkHead(x *exchange) obj {
	id, model := a.ids(x)
	return obj{{"id", id}, {"object", "chat.completion.chunk"}, {"created", x.created}, {"model", model},
		{"service_tier", "default"}, {"system_fingerprint", "fp_zt"}}
}

// chunkEvent is a chunk with one delta per choice; with include_usage every
// chunk but the last carries "usage": null, as OpenAI's do.
func (a openAIChat) chunkEvent(x *exchange, delta func(c int) obj) obj {
	n := x.choices()
	choices := make([]obj, n)
	for c := range n {
		choices[c] = obj{{"index", c}, {"delta", delta(c)}, {"logprobs", nil}, {"finish_reason", nil}}
	}
	ev := append(a.chunkHead(x), kv{"choices", choices})
	if streamUsage(x) {
		ev = append(ev, kv{"usage", nil})
	}
	return ev
}

func (a openAIChat) opening(x *exchange) []event {
	return []event{{data: a.chunkEvent(x, func(int) obj {
		return obj{{"role", "assistant"}, {"content", ""}, {"refusal", nil}}
	})}}
}

func (a openAIChat) chunk(x *exchange, i int) []event {
	text := x.chunkText(i)
	return []event{{data: a.chunkEvent(x, func(int) obj { return obj{{"content", text}} }), content: true, text: text}}
}

func (a openAIChat) closing(x *exchange) []event {
	return openAIStreamTail(x, func() obj { return a.chunkHead(x) }, func(c int, finish string) obj {
		return obj{{"index", c}, {"delta", obj{}}, {"logprobs", nil}, {"finish_reason", finish}}
	})
}

// openAICompletions is the legacy POST …/completions.
type openAICompletions struct{ openAIBase }

func (openAICompletions) name() string { return modelspec.OpenAICompletions }

func (openAICompletions) ids(x *exchange) (string, string) { return x.id("cmpl-zt-"), x.model }

func (a openAICompletions) head(x *exchange) obj {
	id, model := a.ids(x)
	return obj{{"id", id}, {"object", "text_completion"}, {"created", x.created}, {"model", model}, {"system_fingerprint", "fp_zt"}}
}

func (a openAICompletions) body(x *exchange) (any, bool, []string) {
	n := x.choices()
	choices := make([]obj, n)
	finish := make([]string, n)
	for c := range n {
		finish[c] = x.finishReason(c, "stop")
		choices[c] = obj{{"text", x.fullText()}, {"index", c}, {"logprobs", nil}, {"finish_reason", finish[c]}}
	}
	b := append(a.head(x), kv{"choices", choices})
	withUsage := x.opts.Usage != modelspec.UsageNever
	if withUsage {
		b = append(b, kv{"usage", openAIUsage(x)})
	}
	return b, withUsage, finish
}

func (openAICompletions) opening(*exchange) []event { return nil }

func (a openAICompletions) chunk(x *exchange, i int) []event {
	text := x.chunkText(i)
	n := x.choices()
	choices := make([]obj, n)
	for c := range n {
		choices[c] = obj{{"text", text}, {"index", c}, {"logprobs", nil}, {"finish_reason", nil}}
	}
	ev := append(a.head(x), kv{"choices", choices})
	if streamUsage(x) {
		ev = append(ev, kv{"usage", nil})
	}
	return []event{{data: ev, content: true, text: text}}
}

func (a openAICompletions) closing(x *exchange) []event {
	return openAIStreamTail(x, func() obj { return a.head(x) }, func(c int, finish string) obj {
		return obj{{"text", ""}, {"index", c}, {"logprobs", nil}, {"finish_reason", finish}}
	})
}

// vector is embedding number k: dim values that float32 holds exactly.
func vector(x *exchange, k int) []float32 {
	v := make([]float32, x.opts.Dim)
	for j := range v {
		v[j] = float32((k+j)%16+1) / 32
		if j%2 == 1 {
			v[j] = -v[j]
		}
	}
	return v
}

// openAIEmbeddings is POST …/embeddings: never streamed; base64 vectors
// when asked (the Node SDK asks by default).
type openAIEmbeddings struct{ openAIBase }

func (openAIEmbeddings) name() string                     { return modelspec.OpenAIEmbeddings }
func (openAIEmbeddings) embedding() bool                  { return true }
func (openAIEmbeddings) ids(x *exchange) (string, string) { return "", x.model }

func (openAIEmbeddings) body(x *exchange) (any, bool, []string) {
	n := x.inputs()
	data := make([]obj, n)
	for k := range n {
		var emb any = vector(x, k)
		if x.req.EncodingFormat == "base64" {
			raw := make([]byte, 0, 4*x.opts.Dim)
			for _, f := range vector(x, k) {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(raw)
		}
		data[k] = obj{{"object", "embedding"}, {"index", k}, {"embedding", emb}}
	}
	b := obj{{"object", "list"}, {"data", data}, {"model", x.model}}
	withUsage := x.opts.Usage != modelspec.UsageNever
	if withUsage {
		b = append(b, kv{"usage", obj{{"prompt_tokens", x.opts.Input}, {"total_tokens", x.opts.Input}}})
	}
	return b, withUsage, nil
}

// sentUsage: an embedding reports its input tokens only.
func (openAIEmbeddings) sentUsage(u modelspec.Usage) modelspec.Usage {
	return modelspec.Usage{Input: u.Input}
}

func (openAIEmbeddings) opening(*exchange) []event    { return nil }
func (openAIEmbeddings) chunk(*exchange, int) []event { return nil }
func (openAIEmbeddings) closing(*exchange) []event    { return nil }

// openAIResponses is POST …/responses. Its stream has named events with
// sequence numbers; the usage comes only in the terminal event's response.
type openAIResponses struct{ openAIBase }

func (openAIResponses) name() string { return modelspec.OpenAIResponses }

func (openAIResponses) ids(x *exchange) (string, string) { return x.id("resp_zt"), x.model }

// status is the response's final status and, when incomplete, the reason:
// Finish "completed" (the default) or the incomplete reason.
func (openAIResponses) status(x *exchange) (status, reason string) {
	f := x.finishReason(0, "completed")
	if f == "completed" {
		return f, ""
	}
	return "incomplete", f
}

func (a openAIResponses) message(x *exchange, status, text string, done bool) obj {
	content := []obj{}
	if done {
		content = []obj{{{"type", "output_text"}, {"text", text}, {"annotations", []obj{}}, {"logprobs", []obj{}}}}
	}
	return obj{{"type", "message"}, {"id", "msg_zt" + strconv.Itoa(x.rec.Seq)}, {"status", status}, {"role", "assistant"}, {"content", content}}
}

// response is the response object; final adds the output and the usage.
func (a openAIResponses) response(x *exchange, final bool) (obj, []string, bool) {
	id, model := a.ids(x)
	status, reason := "in_progress", ""
	var incomplete any
	output := []obj{}
	var usage any
	var finish []string
	withUsage := false
	if final {
		status, reason = a.status(x)
		finish = []string{status}
		if reason != "" {
			incomplete = obj{{"reason", reason}}
			finish = append(finish, reason)
		}
		output = []obj{a.message(x, "completed", x.fullText(), true)}
		if x.opts.Usage != modelspec.UsageNever {
			u := x.usage()
			usage = obj{{"input_tokens", u.Input}, {"input_tokens_details", obj{{"cached_tokens", u.Cached}}},
				{"output_tokens", u.Output}, {"output_tokens_details", obj{{"reasoning_tokens", u.Reasoning}}},
				{"total_tokens", u.Input + u.Output}}
			withUsage = true
		}
	}
	return obj{
		{"id", id}, {"object", "response"}, {"created_at", x.created}, {"status", status}, {"error", nil},
		{"incomplete_details", incomplete}, {"instructions", nil}, {"max_output_tokens", x.rec.Request.MaxTokens},
		{"model", model}, {"output", output}, {"parallel_tool_calls", true}, {"previous_response_id", nil},
		{"reasoning", obj{{"effort", nil}, {"summary", nil}}}, {"store", true}, {"temperature", 1.0},
		{"text", obj{{"format", obj{{"type", "text"}}}}}, {"tool_choice", "auto"}, {"tools", []obj{}}, {"top_p", 1.0},
		{"truncation", "disabled"}, {"usage", usage}, {"metadata", obj{}},
	}, finish, withUsage
}

// sentUsage: the Responses API's usage has no cache-write count.
func (openAIResponses) sentUsage(u modelspec.Usage) modelspec.Usage {
	u.CacheWrite = 0
	return u
}

func (a openAIResponses) body(x *exchange) (any, bool, []string) {
	b, finish, usage := a.response(x, true)
	return b, usage, finish
}

// ev is a Responses stream event; sequence numbers follow the events sent.
func (openAIResponses) ev(x *exchange, typ string, fields ...kv) event {
	return event{name: typ, data: append(obj{{"type", typ}, {"sequence_number", x.rec.Response.Events}}, fields...)}
}

func (a openAIResponses) opening(x *exchange) []event {
	created, _, _ := a.response(x, false)
	msgID := "msg_zt" + strconv.Itoa(x.rec.Seq)
	evs := []event{a.ev(x, "response.created", kv{"response", created})}
	evs = append(evs, a.seqd(x, len(evs), "response.in_progress", kv{"response", created}))
	evs = append(evs, a.seqd(x, len(evs), "response.output_item.added", kv{"output_index", 0}, kv{"item", a.message(x, "in_progress", "", false)}))
	evs = append(evs, a.seqd(x, len(evs), "response.content_part.added", kv{"item_id", msgID}, kv{"output_index", 0}, kv{"content_index", 0},
		kv{"part", obj{{"type", "output_text"}, {"text", ""}, {"annotations", []obj{}}, {"logprobs", []obj{}}}}))
	return evs
}

// seqd is ev for the k-th event of a batch not yet counted as sent.
func (a openAIResponses) seqd(x *exchange, k int, typ string, fields ...kv) event {
	return event{name: typ, data: append(obj{{"type", typ}, {"sequence_number", x.rec.Response.Events + k}}, fields...)}
}

func (a openAIResponses) chunk(x *exchange, i int) []event {
	text := x.chunkText(i)
	ev := a.ev(x, "response.output_text.delta", kv{"item_id", "msg_zt" + strconv.Itoa(x.rec.Seq)}, kv{"output_index", 0},
		kv{"content_index", 0}, kv{"delta", text}, kv{"logprobs", []obj{}})
	ev.content, ev.text = true, text
	return []event{ev}
}

func (a openAIResponses) closing(x *exchange) []event {
	msgID := "msg_zt" + strconv.Itoa(x.rec.Seq)
	text := x.fullText()
	part := obj{{"type", "output_text"}, {"text", text}, {"annotations", []obj{}}, {"logprobs", []obj{}}}
	final, finish, withUsage := a.response(x, true)
	terminal := "response.completed"
	if finish[0] == "incomplete" {
		terminal = "response.incomplete"
	}
	evs := []event{a.seqd(x, 0, "response.output_text.done", kv{"item_id", msgID}, kv{"output_index", 0}, kv{"content_index", 0},
		kv{"text", text}, kv{"logprobs", []obj{}})}
	evs = append(evs, a.seqd(x, len(evs), "response.content_part.done", kv{"item_id", msgID}, kv{"output_index", 0}, kv{"content_index", 0}, kv{"part", part}))
	evs = append(evs, a.seqd(x, len(evs), "response.output_item.done", kv{"output_index", 0}, kv{"item", a.message(x, "completed", text, true)}))
	last := a.seqd(x, len(evs), terminal, kv{"response", final})
	last.finish, last.usage = finish, withUsage
	return append(evs, last)
}

func (a openAIResponses) streamError(x *exchange, typ, msg string) event {
	ev := a.ev(x, "error", kv{"code", typ}, kv{"message", msg}, kv{"param", nil})
	ev.errType, ev.errMsg = typ, msg
	return ev
}

// --- Anthropic --------------------------------------------------------------

// anthropic is POST …/v1/messages.
type anthropic struct{}

func (anthropic) name() string        { return modelspec.AnthropicMessages }
func (anthropic) defaultStream() bool { return false }
func (anthropic) embedding() bool     { return false }
func (anthropic) ndjson() bool        { return false }
func (anthropic) contentType(stream bool) string {
	if stream {
		return "text/event-stream; charset=utf-8"
	}
	return "application/json"
}

func (anthropic) ids(x *exchange) (string, string) { return x.id("msg_zt"), x.model }

// errorType follows Anthropic's documented error types.
func (anthropic) errorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

func (anthropic) errorBody(x *exchange, _ int, typ, msg string) any {
	return obj{{"type", "error"}, {"error", obj{{"type", typ}, {"message", msg}}}, {"request_id", "req_zt" + strconv.Itoa(x.rec.Seq)}}
}

func (anthropic) recordedErrorType(typ string) string { return typ }

func (anthropic) sentUsage(u modelspec.Usage) modelspec.Usage { return u }

// usage: input_tokens excludes the cache reads and writes, which have their
// own fields.
func (anthropic) usage(x *exchange, output int) obj {
	u := x.usage()
	o := obj{{"input_tokens", u.Input}, {"cache_creation_input_tokens", u.CacheWrite}, {"cache_read_input_tokens", u.Cached},
		{"output_tokens", output}}
	if u.Reasoning > 0 {
		o = append(o, kv{"output_tokens_details", obj{{"thinking_tokens", u.Reasoning}}})
	}
	return o
}

func (a anthropic) message(x *exchange, final bool) (obj, []string) {
	id, model := a.ids(x)
	content := []obj{}
	var stop any
	var finish []string
	usageOut := 1
	if final {
		content = []obj{{{"type", "text"}, {"text", x.fullText()}}}
		f := x.finishReason(0, "end_turn")
		stop, finish = f, []string{f}
		usageOut = x.usage().Output
	}
	m := obj{{"id", id}, {"type", "message"}, {"role", "assistant"}, {"model", model}, {"content", content},
		{"stop_reason", stop}, {"stop_sequence", nil}}
	if x.opts.Usage != modelspec.UsageNever {
		m = append(m, kv{"usage", a.usage(x, usageOut)})
	}
	return m, finish
}

func (a anthropic) body(x *exchange) (any, bool, []string) {
	m, finish := a.message(x, true)
	return m, x.opts.Usage != modelspec.UsageNever, finish
}

func (a anthropic) opening(x *exchange) []event {
	start, _ := a.message(x, false)
	return []event{
		{name: "message_start", data: obj{{"type", "message_start"}, {"message", start}}},
		{name: "content_block_start", data: obj{{"type", "content_block_start"}, {"index", 0}, {"content_block", obj{{"type", "text"}, {"text", ""}}}}},
		{name: "ping", data: obj{{"type", "ping"}}},
	}
}

func (anthropic) chunk(x *exchange, i int) []event {
	text := x.chunkText(i)
	return []event{{name: "content_block_delta", data: obj{{"type", "content_block_delta"}, {"index", 0},
		{"delta", obj{{"type", "text_delta"}, {"text", text}}}}, content: true, text: text}}
}

func (a anthropic) closing(x *exchange) []event {
	f := x.finishReason(0, "end_turn")
	delta := obj{{"type", "message_delta"}, {"delta", obj{{"stop_reason", f}, {"stop_sequence", nil}}}}
	withUsage := x.opts.Usage != modelspec.UsageNever
	if withUsage {
		delta = append(delta, kv{"usage", a.usage(x, x.usage().Output)})
	}
	return []event{
		{name: "content_block_stop", data: obj{{"type", "content_block_stop"}, {"index", 0}}},
		{name: "message_delta", data: delta, finish: []string{f}, usage: withUsage},
		{name: "message_stop", data: obj{{"type", "message_stop"}}},
	}
}

func (anthropic) streamError(_ *exchange, typ, msg string) event {
	return event{name: "error", data: obj{{"type", "error"}, {"error", obj{{"type", typ}, {"message", msg}}}}, errType: typ, errMsg: msg}
}

// --- Ollama -----------------------------------------------------------------

// ollama is /api/chat, /api/generate or /api/embed: NDJSON streams (the
// default), durations in nanoseconds, errors {"error": "..."} without a
// type.
type ollama struct{ kind string }

func (o ollama) name() string        { return o.kind }
func (o ollama) defaultStream() bool { return o.kind != modelspec.OllamaEmbed }
func (o ollama) embedding() bool     { return o.kind == modelspec.OllamaEmbed }
func (ollama) ndjson() bool          { return true }
func (ollama) contentType(stream bool) string {
	if stream {
		return "application/x-ndjson"
	}
	return "application/json; charset=utf-8"
}

func (ollama) ids(x *exchange) (string, string) { return "", x.model }

func (ollama) errorType(int) string { return "" }

func (ollama) errorBody(_ *exchange, _ int, _, msg string) any { return obj{{"error", msg}} }

func (ollama) recordedErrorType(string) string { return "" }

// sentUsage: Ollama counts prompt and output tokens (eval), nothing else;
// an embedding only the prompt.
func (o ollama) sentUsage(u modelspec.Usage) modelspec.Usage {
	if o.kind == modelspec.OllamaEmbed {
		return modelspec.Usage{Input: u.Input}
	}
	return modelspec.Usage{Input: u.Input, Output: u.Output}
}

func (ollama) streamError(_ *exchange, _, msg string) event {
	return event{data: obj{{"error", msg}}, errMsg: msg}
}

func (o ollama) line(x *exchange, text string, done bool) obj {
	l := obj{{"model", x.model}, {"created_at", time.Now().UTC().Format(time.RFC3339Nano)}}
	if o.kind == modelspec.OllamaChat {
		l = append(l, kv{"message", obj{{"role", "assistant"}, {"content", text}}})
	} else {
		l = append(l, kv{"response", text})
	}
	return append(l, kv{"done", done})
}

// final is the last line's (or a non-streamed answer's) done fields.
func (o ollama) final(x *exchange, text string) (obj, []string, bool) {
	f := x.finishReason(0, "stop")
	l := append(o.line(x, text, true), kv{"done_reason", f})
	if o.kind == modelspec.OllamaGenerate {
		l = append(l, kv{"context", []int{1, 2, 3}})
	}
	total := time.Since(x.rec.Times.BodyRead)
	l = append(l, kv{"total_duration", total.Nanoseconds()}, kv{"load_duration", 1000})
	withUsage := x.opts.Usage != modelspec.UsageNever
	if withUsage {
		l = append(l, kv{"prompt_eval_count", x.opts.Input})
	}
	l = append(l, kv{"prompt_eval_duration", x.opts.TTFT.Nanoseconds()})
	if withUsage {
		l = append(l, kv{"eval_count", x.usage().Output})
	}
	l = append(l, kv{"eval_duration", (time.Duration(max(x.opts.Chunks-1, 0)) * x.opts.Gap).Nanoseconds()})
	return l, []string{f}, withUsage
}

func (o ollama) body(x *exchange) (any, bool, []string) {
	if o.kind == modelspec.OllamaEmbed {
		n := x.inputs()
		embs := make([][]float32, n)
		for k := range n {
			embs[k] = vector(x, k)
		}
		b := obj{{"model", x.model}, {"embeddings", embs}, {"total_duration", time.Since(x.rec.Times.BodyRead).Nanoseconds()},
			{"load_duration", 1000}}
		withUsage := x.opts.Usage != modelspec.UsageNever
		if withUsage {
			b = append(b, kv{"prompt_eval_count", x.opts.Input})
		}
		return b, withUsage, nil
	}
	l, finish, usage := o.final(x, x.fullText())
	return l, usage, finish
}

func (ollama) opening(*exchange) []event { return nil }

func (o ollama) chunk(x *exchange, i int) []event {
	text := x.chunkText(i)
	return []event{{data: o.line(x, text, false), content: true, text: text}}
}

func (o ollama) closing(x *exchange) []event {
	l, finish, usage := o.final(x, "")
	return []event{{data: l, finish: finish, usage: usage}}
}

// marshal encodes a field value; obj values encode themselves in order.
func marshal(v any) ([]byte, error) { return json.Marshal(v) }
