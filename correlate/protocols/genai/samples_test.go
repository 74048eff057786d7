package genai

import (
	"strings"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// Bodies shaped like what the APIs and their official clients send (key
// order included: the Go SDKs write "messages" before "model" and
// "stream" last; node's client writes "model" first). Written for these
// tests; the values are made up.

// sample is one call: its request body, its response head and body. A
// streamed body is given as its events (or lines), each sent at its own
// time, 10 ms apart.
type sample struct {
	name   string
	api    model.GenAIAPI
	req    string
	status int
	ctype  string
	body   string   // a whole body
	events []string // or a stream's pieces
}

func sse(events ...string) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e + "\n\n"
	}
	return out
}

func ndjson(lines ...string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l + "\n"
	}
	return out
}

const chatReqGo = `{"messages":[{"content":"You are terse.","role":"system"},{"content":"Say hi to zt-canary-1","role":"user"}],` +
	`"model":"gpt-4o-mini","max_completion_tokens":64,"max_tokens":10,"n":1,"seed":-7,"stop":["END","\n\n"],` +
	`"temperature":0.2,"top_p":0.9,"frequency_penalty":0,"presence_penalty":0.5,"response_format":{"type":"json_object"},"service_tier":"auto"}`

const chatResp = `{"id":"chatcmpl-AbC123","object":"chat.completion","created":1733000000,"model":"gpt-4o-mini-2024-07-18",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hi zt-canary-2!","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"},` +
	`{"index":1,"message":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":"length"}],` +
	`"usage":{"prompt_tokens":21,"completion_tokens":3,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0},` +
	`"completion_tokens_details":{"reasoning_tokens":1,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},` +
	`"service_tier":"default","system_fingerprint":"fp_44709d6fcb"}`

func chunk(delta, finish string) string {
	return `data: {"id":"chatcmpl-S1","object":"chat.completion.chunk","created":1733000001,"model":"gpt-4o-mini-2024-07-18",` +
		`"system_fingerprint":"fp_1","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}],"usage":null}`
}

var chatStreamEvents = sse(
	chunk(`{"role":"assistant","content":"","refusal":null}`, "null"),
	chunk(`{"content":"Hel"}`, "null"),
	chunk(`{"content":"lo \u00e9"}`, "null"),
	chunk(`{}`, `"stop"`),
	`data: {"id":"chatcmpl-S1","object":"chat.completion.chunk","created":1733000001,"model":"gpt-4o-mini-2024-07-18","choices":[],`+
		`"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`,
	`data: [DONE]`,
)

var samples = []sample{
	{name: "chat", api: model.GenAIChatCompletions, req: chatReqGo, status: 200, ctype: "application/json", body: chatResp},
	{name: "chat-stream-usage", api: model.GenAIChatCompletions,
		req:    `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
		status: 200, ctype: "text/event-stream; charset=utf-8", events: chatStreamEvents},
	{name: "chat-stream-nousage", api: model.GenAIChatCompletions,
		req:    `{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini","stream":true}`,
		status: 200, ctype: "text/event-stream", events: append(append([]string{}, chatStreamEvents[:4]...), chatStreamEvents[5])},
	{name: "chat-stream-toolcall", api: model.GenAIChatCompletions,
		req:    `{"messages":[{"content":"weather?","role":"user"}],"model":"gpt-4o","tools":[{"type":"function","function":{"name":"w"}}],"stream":true}`,
		status: 200, ctype: "text/event-stream", events: sse(
			chunk(`{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"w","arguments":""}}]}`, "null"),
			chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}`, "null"),
			chunk(`{}`, `"tool_calls"`),
			`data: [DONE]`)},
	{name: "chat-429", api: model.GenAIChatCompletions, req: chatReqGo, status: 429, ctype: "application/json",
		body: `{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
	{name: "chat-stream-error", api: model.GenAIChatCompletions,
		req:    `{"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini","stream":true}`,
		status: 200, ctype: "text/event-stream", events: sse(
			chunk(`{"role":"assistant","content":"A"}`, "null"),
			`data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}`)},
	{name: "completions", api: model.GenAICompletions,
		req:    `{"prompt":"Once upon a time","model":"gpt-3.5-turbo-instruct","max_tokens":16,"temperature":1,"stop":"\n"}`,
		status: 200, ctype: "application/json",
		body: `{"id":"cmpl-9","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[{"text":" there was","index":0,` +
			`"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":4,"completion_tokens":16,"total_tokens":20}}`},
	{name: "completions-stream", api: model.GenAICompletions,
		req:    `{"prompt":"Once","model":"gpt-3.5-turbo-instruct","stream":true}`,
		status: 200, ctype: "text/event-stream", events: sse(
			`data: {"id":"cmpl-S","object":"text_completion","created":1,"choices":[{"text":" upon","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}`,
			`data: {"id":"cmpl-S","object":"text_completion","created":1,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}],"model":"gpt-3.5-turbo-instruct"}`,
			`data: [DONE]`)},
	{name: "embeddings", api: model.GenAIEmbeddings,
		req:    `{"input":["zt-canary-3","b"],"model":"text-embedding-3-small","dimensions":4,"encoding_format":"float"}`,
		status: 200, ctype: "application/json",
		body: `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093,0.0158,-1.2e-3]},` +
			`{"object":"embedding","index":1,"embedding":[0.1,0.2,0.3,0.4]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}`},
	{name: "responses-stream", api: model.GenAIResponses,
		req:    `{"input":"Tell me a joke","model":"gpt-4.1","instructions":"Be brief","max_output_tokens":100,"stream":true}`,
		status: 200, ctype: "text/event-stream; charset=utf-8", events: sse(
			"event: response.created\n"+`data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c","object":"response","created_at":1,"status":"in_progress","error":null,"incomplete_details":null,"model":"gpt-4.1-2025-04-14","output":[],"usage":null}}`,
			"event: response.output_item.added\n"+`data: {"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","content":[],"role":"assistant"}}`,
			"event: response.reasoning_summary_text.delta\n"+`data: {"type":"response.reasoning_summary_text.delta","sequence_number":2,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"thinking"}`,
			"event: response.output_text.delta\n"+`data: {"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Why"}`,
			"event: response.output_text.delta\n"+`data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" not?"}`,
			"event: response.output_text.done\n"+`data: {"type":"response.output_text.done","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Why not?"}`,
			"event: response.completed\n"+`data: {"type":"response.completed","sequence_number":6,"response":{"id":"resp_67c","object":"response","created_at":1,"status":"completed","error":null,`+
				`"incomplete_details":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_1","type":"message","status":"completed","content":[{"type":"output_text","text":"Why not?","annotations":[]}],"role":"assistant"}],`+
				`"service_tier":"default","usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":2},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":15}}}`)},
	{name: "responses-incomplete", api: model.GenAIResponses,
		req:    `{"input":[{"role":"user","content":"long story"}],"model":"gpt-4.1","max_output_tokens":5}`,
		status: 200, ctype: "application/json",
		body: `{"id":"resp_9","object":"response","created_at":1,"status":"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"},` +
			`"model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_2","status":"incomplete","role":"assistant","content":[{"type":"output_text","text":"Once upon"}]}],` +
			`"usage":{"input_tokens":8,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13}}`},
	{name: "anthropic", api: model.GenAIMessages,
		req:    `{"max_tokens":64,"messages":[{"content":"Hello zt-canary-4","role":"user"}],"model":"claude-sonnet-4-5","system":"Be kind","temperature":0.7,"top_k":40,"stop_sequences":["STOP"]}`,
		status: 200, ctype: "application/json",
		body: `{"id":"msg_01XFD","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi there"}],` +
			`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":100,"output_tokens":4,"service_tier":"standard"}}`},
	{name: "anthropic-stream", api: model.GenAIMessages,
		req:    `{"max_tokens":64,"messages":[{"content":"Hello","role":"user"}],"model":"claude-haiku-4-5","stream":true}`,
		status: 200, ctype: "text/event-stream; charset=utf-8", events: sse(
			"event: message_start\n"+`data: {"type":"message_start","message":{"id":"msg_S","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"output_tokens":1}}}`,
			"event: content_block_start\n"+`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
			"event: ping\n"+`data: {"type": "ping"}`,
			"event: content_block_delta\n"+`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`,
			"event: content_block_delta\n"+`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}`,
			"event: content_block_stop\n"+`data: {"type":"content_block_stop","index":0}`,
			"event: message_delta\n"+`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}`,
			"event: message_stop\n"+`data: {"type":"message_stop"}`)},
	{name: "anthropic-529", api: model.GenAIMessages,
		req:    `{"max_tokens":64,"messages":[{"content":"Hello","role":"user"}],"model":"claude-haiku-4-5"}`,
		status: 529, ctype: "application/json",
		body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011"}`},
	{name: "anthropic-stream-error", api: model.GenAIMessages,
		req:    `{"max_tokens":64,"messages":[{"content":"Hello","role":"user"}],"model":"claude-haiku-4-5","stream":true}`,
		status: 200, ctype: "text/event-stream", events: sse(
			"event: message_start\n"+`data: {"type":"message_start","message":{"id":"msg_E","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}`,
			"event: error\n"+`data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)},
	{name: "ollama-chat-stream", api: model.GenAIOllamaChat,
		req:    `{"model":"llama3.2","messages":[{"role":"user","content":"why is the sky blue?"}],"options":{"temperature":0.1,"num_predict":32,"top_k":20,"seed":42,"stop":["\n"]}}`,
		status: 200, ctype: "application/x-ndjson", events: ndjson(
			`{"model":"llama3.2","created_at":"2025-01-01T00:00:00.1Z","message":{"role":"assistant","content":"The"},"done":false}`,
			`{"model":"llama3.2","created_at":"2025-01-01T00:00:00.2Z","message":{"role":"assistant","content":" sky"},"done":false}`,
			`{"model":"llama3.2","created_at":"2025-01-01T00:00:00.3Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,`+
				`"total_duration":4883583458,"load_duration":1334875,"prompt_eval_duration":342546000,"eval_count":2,"eval_duration":4535599000}`)},
	{name: "ollama-generate", api: model.GenAIOllamaGenerate,
		req:    `{"model":"llama3.2","prompt":"Why?","stream":false,"format":"json"}`,
		status: 200, ctype: "application/json; charset=utf-8",
		body: `{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":"{\"because\":1}","done":true,"done_reason":"stop","context":[1,2,3],` +
			`"total_duration":5043500667,"load_duration":5025959,"prompt_eval_count":26,"prompt_eval_duration":325953000,"eval_count":290,"eval_duration":4709213000}`},
	{name: "ollama-embed", api: model.GenAIOllamaEmbed,
		req:    `{"model":"all-minilm","input":["a","b"]}`,
		status: 200, ctype: "application/json",
		body: `{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862],[0.1,0.2]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}`},
	{name: "ollama-404", api: model.GenAIOllamaChat,
		req:    `{"model":"nope","messages":[{"role":"user","content":"x"}]}`,
		status: 404, ctype: "application/json; charset=utf-8", body: `{"error":"model \"nope\" not found, try pulling it first"}`},
}

// want is what Finish gives for a sample, as the fields tests compare.
type want struct {
	reqModel, respModel, id string
	stream                  bool
	maxTokens               int64
	finish                  string
	in, out, cacheRead      int64
	cacheCreate, reasoning  int64
	estimated               bool
	chunks, content         int32
	firstChunk, firstToken  int // index of the event, -1 none
	errType                 string
	end                     model.GenAIEnd
}

var wants = map[string]want{
	"chat": {reqModel: "gpt-4o-mini", respModel: "gpt-4o-mini-2024-07-18", id: "chatcmpl-AbC123", maxTokens: 64, finish: "stop,length",
		in: 21, out: 3, cacheRead: 8, cacheCreate: -1, reasoning: 1, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"chat-stream-usage": {reqModel: "gpt-4o-mini", respModel: "gpt-4o-mini-2024-07-18", id: "chatcmpl-S1", stream: true, maxTokens: -1,
		finish: "stop", in: 9, out: 2, cacheRead: 0, cacheCreate: -1, reasoning: 0, chunks: 5, content: 2, firstChunk: 0, firstToken: 1,
		end: model.GenAIEndDone},
	"chat-stream-nousage": {reqModel: "gpt-4o-mini", respModel: "gpt-4o-mini-2024-07-18", id: "chatcmpl-S1", stream: true, maxTokens: -1,
		finish: "stop", in: -1, out: 2, estimated: true, cacheRead: -1, cacheCreate: -1, reasoning: -1, chunks: 4, content: 2,
		firstChunk: 0, firstToken: 1, end: model.GenAIEndDone},
	"chat-stream-toolcall": {reqModel: "gpt-4o", respModel: "gpt-4o-mini-2024-07-18", id: "chatcmpl-S1", stream: true, maxTokens: -1,
		finish: "tool_calls", in: -1, out: 2, estimated: true, cacheRead: -1, cacheCreate: -1, reasoning: -1, chunks: 3, content: 2,
		firstChunk: 0, firstToken: 0, end: model.GenAIEndDone},
	"chat-429": {reqModel: "gpt-4o-mini", maxTokens: 64, in: -1, out: -1, cacheRead: -1, cacheCreate: -1, reasoning: -1,
		firstChunk: -1, firstToken: -1, errType: "requests", end: model.GenAIEndDone},
	"chat-stream-error": {reqModel: "gpt-4o-mini", respModel: "gpt-4o-mini-2024-07-18", id: "chatcmpl-S1", stream: true, maxTokens: -1,
		in: -1, out: 1, estimated: true, cacheRead: -1, cacheCreate: -1, reasoning: -1, chunks: 2, content: 1, firstChunk: 0, firstToken: 0,
		errType: "server_error", end: model.GenAIEndDone},
	"completions": {reqModel: "gpt-3.5-turbo-instruct", respModel: "gpt-3.5-turbo-instruct", id: "cmpl-9", maxTokens: 16, finish: "length",
		in: 4, out: 16, cacheRead: -1, cacheCreate: -1, reasoning: -1, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"completions-stream": {reqModel: "gpt-3.5-turbo-instruct", respModel: "gpt-3.5-turbo-instruct", id: "cmpl-S", stream: true, maxTokens: -1,
		finish: "stop", in: -1, out: 1, estimated: true, cacheRead: -1, cacheCreate: -1, reasoning: -1, chunks: 2, content: 1,
		firstChunk: 0, firstToken: 0, end: model.GenAIEndDone},
	"embeddings": {reqModel: "text-embedding-3-small", respModel: "text-embedding-3-small", maxTokens: -1, in: 5, out: -1,
		cacheRead: -1, cacheCreate: -1, reasoning: -1, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"responses-stream": {reqModel: "gpt-4.1", respModel: "gpt-4.1-2025-04-14", id: "resp_67c", stream: true, maxTokens: 100, finish: "stop",
		in: 12, out: 3, cacheRead: 2, cacheCreate: -1, reasoning: 1, chunks: 7, content: 2, firstChunk: 0, firstToken: 3, end: model.GenAIEndDone},
	"responses-incomplete": {reqModel: "gpt-4.1", respModel: "gpt-4.1-2025-04-14", id: "resp_9", maxTokens: 5, finish: "length",
		in: 8, out: 5, cacheRead: 0, cacheCreate: -1, reasoning: 0, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"anthropic": {reqModel: "claude-sonnet-4-5", respModel: "claude-sonnet-4-5-20250929", id: "msg_01XFD", maxTokens: 64, finish: "end_turn",
		in: 130, out: 4, cacheRead: 100, cacheCreate: 20, reasoning: -1, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"anthropic-stream": {reqModel: "claude-haiku-4-5", respModel: "claude-haiku-4-5-20251001", id: "msg_S", stream: true, maxTokens: 64,
		finish: "end_turn", in: 30, out: 15, cacheRead: 5, cacheCreate: 0, reasoning: -1, chunks: 7, content: 2, firstChunk: 0, firstToken: 3,
		end: model.GenAIEndDone},
	"anthropic-529": {reqModel: "claude-haiku-4-5", maxTokens: 64, in: -1, out: -1, cacheRead: -1, cacheCreate: -1, reasoning: -1,
		firstChunk: -1, firstToken: -1, errType: "overloaded_error", end: model.GenAIEndDone},
	"anthropic-stream-error": {reqModel: "claude-haiku-4-5", respModel: "claude-haiku-4-5-20251001", id: "msg_E", stream: true, maxTokens: 64,
		in: 3, out: 1, cacheRead: -1, cacheCreate: -1, reasoning: -1, chunks: 2, firstChunk: 0, firstToken: -1, errType: "overloaded_error",
		end: model.GenAIEndDone},
	"ollama-chat-stream": {reqModel: "llama3.2", respModel: "llama3.2", stream: true, maxTokens: 32, finish: "stop", in: 0, out: 2,
		cacheRead: -1, cacheCreate: -1, reasoning: -1, chunks: 3, content: 2, firstChunk: 0, firstToken: 0, end: model.GenAIEndDone},
	"ollama-generate": {reqModel: "llama3.2", respModel: "llama3.2", maxTokens: -1, finish: "stop", in: 26, out: 290,
		cacheRead: -1, cacheCreate: -1, reasoning: -1, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"ollama-embed": {reqModel: "all-minilm", respModel: "all-minilm", maxTokens: -1, in: 8, out: -1,
		cacheRead: -1, cacheCreate: -1, reasoning: -1, firstChunk: -1, firstToken: -1, end: model.GenAIEndDone},
	"ollama-404": {reqModel: "nope", stream: true, maxTokens: -1, in: -1, out: -1, cacheRead: -1, cacheCreate: -1, reasoning: -1,
		firstChunk: -1, firstToken: -1, errType: "404", end: model.GenAIEndDone},
}

// wholeBody is a sample's response body in one piece.
func (s *sample) wholeBody() string {
	if s.events == nil {
		return s.body
	}
	return strings.Join(s.events, "")
}
