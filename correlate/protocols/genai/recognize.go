// Package genai reads calls to model APIs out of HTTP bodies: which API a
// request is for (Recognize, by method and path), and, from the request
// and response bodies fed in pieces (Exchange), the model asked for and
// the one that answered, the sampling parameters, the finish reasons, the
// token counts, the stream's timing and the API's error object — into a
// model.GenAI, which refines the HTTP span of the call.
//
// Bodies can be megabytes of prompt around the few bytes that matter, and
// the capture may have seen only their first bytes and their last: the
// JSON is read with jscan (a fixed few hundred bytes whatever the body),
// the end of a body whose middle was not seen with jscan.Tail. Streams
// (server-sent events for OpenAI and Anthropic, newline-delimited JSON for
// Ollama) are read event by event as they arrive, each event's time kept
// for the time to first token.
//
// Like the other protocol parsers it is plain Go, keeps no reference to
// the bytes it is fed, and is not safe for concurrent use.
package genai

import (
	"strings"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// Routes maps request paths to the API they serve. A path matches by its
// last two segments ("chat/completions", "v1/messages", "api/chat"), which
// is what every deployment of an API keeps whatever it puts before them
// (/v1/chat/completions, /openai/v1/chat/completions, a gateway's prefix).
type Routes struct {
	bySuffix map[string]model.GenAIAPI
	// byPath holds whole paths a configuration declares, matched
	// exactly before any suffix.
	byPath map[string]model.GenAIAPI
}

// DefaultSuffixes are the path endings each API is recognised by. The
// kernel path copies body bytes only for the usual paths of these at a
// server's root (bpf/syscalls/http.h, looks_like_genai; TestKernelPrefixes
// keeps the two in step).
var DefaultSuffixes = []struct {
	Suffix string
	API    model.GenAIAPI
}{
	{"chat/completions", model.GenAIChatCompletions},
	{"v1/completions", model.GenAICompletions},
	{"v1/embeddings", model.GenAIEmbeddings},
	{"v1/responses", model.GenAIResponses},
	{"v1/messages", model.GenAIMessages},
	{"api/chat", model.GenAIOllamaChat},
	{"api/generate", model.GenAIOllamaGenerate},
	{"api/embed", model.GenAIOllamaEmbed},
}

// NewRoutes returns the default routes.
func NewRoutes() *Routes {
	r := &Routes{bySuffix: map[string]model.GenAIAPI{}}
	for _, d := range DefaultSuffixes {
		r.bySuffix[d.Suffix] = d.API
	}
	return r
}

// Add recognises one more path ending (its last two segments, or one)
// as api; a configuration adds the paths of other deployments this way.
func (r *Routes) Add(suffix string, api model.GenAIAPI) {
	r.bySuffix[strings.Trim(suffix, "/")] = api
}

// AddPath recognises one whole path (a deployment's own, such as
// /llm/v2/generate) as api.
func (r *Routes) AddPath(path string, api model.GenAIAPI) {
	if r.byPath == nil {
		r.byPath = map[string]model.GenAIAPI{}
	}
	r.byPath["/"+strings.Trim(path, "/")] = api
}

// defaultRoutes serves Recognize.
var defaultRoutes = NewRoutes()

// Recognize says which API a request is a call to, by the default routes.
func Recognize(method, path string) (model.GenAIAPI, bool) {
	return defaultRoutes.Recognize(method, path)
}

// Recognize says which API a request (its method, and its target's path,
// a query allowed) is a call to. Every model API call is a POST.
func (r *Routes) Recognize(method, path string) (model.GenAIAPI, bool) {
	if method != "POST" {
		return model.GenAINone, false
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimSuffix(path, "/")
	if a, ok := r.byPath[path]; ok {
		return a, true
	}
	// The last two segments, then the last one.
	last := strings.LastIndexByte(path, '/')
	if last < 0 {
		return model.GenAINone, false
	}
	two := path
	if prev := strings.LastIndexByte(path[:last], '/'); prev >= 0 {
		two = path[prev+1:]
	}
	if a, ok := r.bySuffix[two]; ok {
		return a, true
	}
	if a, ok := r.bySuffix[path[last+1:]]; ok {
		return a, true
	}
	return model.GenAINone, false
}

// Operation is gen_ai.operation.name for an API.
func Operation(api model.GenAIAPI) string {
	switch api {
	case model.GenAIChatCompletions, model.GenAIResponses, model.GenAIMessages, model.GenAIOllamaChat:
		return "chat"
	case model.GenAICompletions, model.GenAIOllamaGenerate:
		return "text_completion"
	case model.GenAIEmbeddings, model.GenAIOllamaEmbed:
		return "embeddings"
	}
	return ""
}

// Provider is gen_ai.provider.name for an API when nothing configured
// says otherwise. The name says which format the telemetry follows, not
// who runs the model: an OpenAI-shaped API is "openai" on any host (vLLM,
// llama.cpp, a gateway), as the conventions advise; Ollama's own API has
// no well-known name and gets "ollama".
func Provider(api model.GenAIAPI) string {
	switch api {
	case model.GenAIChatCompletions, model.GenAICompletions, model.GenAIEmbeddings, model.GenAIResponses:
		return "openai"
	case model.GenAIMessages:
		return "anthropic"
	case model.GenAIOllamaChat, model.GenAIOllamaGenerate, model.GenAIOllamaEmbed:
		return "ollama"
	}
	return ""
}
