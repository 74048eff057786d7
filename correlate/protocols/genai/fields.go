package genai

import (
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai/jscan"
)

// field is what a watched value is, whatever API and path it comes from.
type field int

const (
	_ field = iota
	// The request.
	fModel
	fStream
	fMaxTokens
	fMaxCompletionTokens // wins over fMaxTokens (OpenAI deprecated max_tokens for it)
	fTemperature
	fTopP
	fTopK
	fFrequencyPenalty
	fPresencePenalty
	fSeed
	fChoiceCount
	fStop // a string, or an array of them
	fStopElem
	fRequestServiceTier
	fFormatType // response_format.type, text.format.type
	fOllamaFormat
	fEncodingFormat
	fDimensions

	// The response, and stream events.
	fResponseID
	fResponseModel
	fFinishReason
	fResponseStatus   // Responses API: completed, incomplete, failed
	fIncompleteReason // Responses API: incomplete_details.reason
	fServiceTier
	fSystemFingerprint
	fInputTokens   // input, cached included (OpenAI, Ollama)
	fInputUncached // Anthropic's input_tokens: cached tokens not included
	fOutputTokens
	fCacheRead
	fCacheCreation
	fReasoning
	fDone // Ollama's "done"
	fEventType
	fContent // a content delta: a text, a tool call, a refusal
	// Errors: the error object's type, its code, its message; Ollama's
	// error is a string.
	fErrorType
	fErrorCode
	fErrorMessage
	fErrorText
	fType // a document's "type" ("error" for Anthropic's error body)

	// Content, only when captured.
	fInMsg // a message object starts or ends
	fInRole
	fInText
	fSystem
	fOutRole
	fOutText
)

// side is which kind of document a set of paths reads.
type side uint8

const (
	sideRequest  side = iota
	sideResponse      // a whole, non-streamed response body
	sideEvent         // one stream event (an SSE data payload, an NDJSON line)
	sides
)

// spec lists the paths of one API and side; content paths are watched only
// when content is captured.
type spec struct {
	paths   []pathField
	content []pathField
}

type pathField struct {
	path string
	f    field
	text bool // a text handed over in fragments (content)
}

func v(path string, f field) pathField { return pathField{path: path, f: f} }
func t(path string, f field) pathField { return pathField{path: path, f: f, text: true} }

// openAIUsage is usage in the chat and completions shape.
func openAIUsage(prefix string) []pathField {
	return []pathField{
		v(prefix+"usage.prompt_tokens", fInputTokens),
		v(prefix+"usage.completion_tokens", fOutputTokens),
		v(prefix+"usage.prompt_tokens_details.cached_tokens", fCacheRead),
		v(prefix+"usage.prompt_tokens_details.cache_write_tokens", fCacheCreation),
		v(prefix+"usage.completion_tokens_details.reasoning_tokens", fReasoning),
	}
}

// responsesUsage is usage in the Responses API's shape.
func responsesUsage(prefix string) []pathField {
	return []pathField{
		v(prefix+"usage.input_tokens", fInputTokens),
		v(prefix+"usage.output_tokens", fOutputTokens),
		v(prefix+"usage.input_tokens_details.cached_tokens", fCacheRead),
		v(prefix+"usage.input_tokens_details.cache_write_tokens", fCacheCreation),
		v(prefix+"usage.output_tokens_details.reasoning_tokens", fReasoning),
	}
}

func anthropicUsage(prefix string) []pathField {
	return []pathField{
		v(prefix+"usage.input_tokens", fInputUncached),
		v(prefix+"usage.output_tokens", fOutputTokens),
		v(prefix+"usage.cache_read_input_tokens", fCacheRead),
		v(prefix+"usage.cache_creation_input_tokens", fCacheCreation),
		v(prefix+"usage.output_tokens_details.thinking_tokens", fReasoning),
	}
}

var openAIError = []pathField{
	v("error.type", fErrorType), v("error.code", fErrorCode), v("error.message", fErrorMessage),
}

func cat(lists ...[]pathField) []pathField {
	var out []pathField
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// openAIRequest is what the OpenAI-shaped requests share.
var openAIRequest = []pathField{
	v("model", fModel), v("stream", fStream), v("max_tokens", fMaxTokens),
	v("temperature", fTemperature), v("top_p", fTopP), v("seed", fSeed), v("n", fChoiceCount),
	v("frequency_penalty", fFrequencyPenalty), v("presence_penalty", fPresencePenalty),
	v("stop", fStop), v("stop.[]", fStopElem), v("service_tier", fRequestServiceTier),
}

// ollamaOptions are Ollama's sampling options.
var ollamaRequest = []pathField{
	v("model", fModel), v("stream", fStream), v("format", fOllamaFormat),
	v("options.num_predict", fMaxTokens), v("options.temperature", fTemperature), v("options.top_p", fTopP),
	v("options.top_k", fTopK), v("options.seed", fSeed), v("options.stop", fStop), v("options.stop.[]", fStopElem),
	v("options.frequency_penalty", fFrequencyPenalty), v("options.presence_penalty", fPresencePenalty),
}

var ollamaResponse = []pathField{
	v("model", fResponseModel), v("done", fDone), v("done_reason", fFinishReason),
	v("prompt_eval_count", fInputTokens), v("eval_count", fOutputTokens), v("error", fErrorText),
}

// specs is the paths of every API and side.
var specs = [...][sides]spec{
	model.GenAIChatCompletions: {
		sideRequest: {
			paths: cat(openAIRequest, []pathField{v("max_completion_tokens", fMaxCompletionTokens),
				v("response_format.type", fFormatType)}),
			content: []pathField{v("messages.[]", fInMsg), v("messages.[].role", fInRole),
				t("messages.[].content", fInText), t("messages.[].content.[].text", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{v("id", fResponseID), v("model", fResponseModel),
				v("choices.[].finish_reason", fFinishReason), v("service_tier", fServiceTier),
				v("system_fingerprint", fSystemFingerprint)}, openAIUsage(""), openAIError),
			content: []pathField{v("choices.[].message.role", fOutRole), t("choices.[].message.content", fOutText)},
		},
		sideEvent: {
			paths: cat([]pathField{v("id", fResponseID), v("model", fResponseModel),
				v("choices.[].finish_reason", fFinishReason), v("service_tier", fServiceTier),
				v("system_fingerprint", fSystemFingerprint),
				v("choices.[].delta.content", fContent), v("choices.[].delta.refusal", fContent),
				v("choices.[].delta.tool_calls", fContent)}, openAIUsage(""), openAIError),
			content: []pathField{t("choices.[].delta.content", fOutText)},
		},
	},
	model.GenAICompletions: {
		sideRequest: {
			paths:   openAIRequest,
			content: []pathField{t("prompt", fInText), t("prompt.[]", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{v("id", fResponseID), v("model", fResponseModel),
				v("choices.[].finish_reason", fFinishReason), v("system_fingerprint", fSystemFingerprint)},
				openAIUsage(""), openAIError),
			content: []pathField{t("choices.[].text", fOutText)},
		},
		sideEvent: {
			paths: cat([]pathField{v("id", fResponseID), v("model", fResponseModel),
				v("choices.[].finish_reason", fFinishReason), v("system_fingerprint", fSystemFingerprint),
				v("choices.[].text", fContent)}, openAIUsage(""), openAIError),
			content: []pathField{t("choices.[].text", fOutText)},
		},
	},
	model.GenAIEmbeddings: {
		sideRequest: {paths: []pathField{v("model", fModel), v("encoding_format", fEncodingFormat),
			v("dimensions", fDimensions)}},
		sideResponse: {paths: cat([]pathField{v("model", fResponseModel), v("usage.prompt_tokens", fInputTokens)},
			openAIError)},
	},
	model.GenAIResponses: {
		sideRequest: {
			paths: []pathField{v("model", fModel), v("stream", fStream), v("max_output_tokens", fMaxTokens),
				v("temperature", fTemperature), v("top_p", fTopP), v("service_tier", fRequestServiceTier),
				v("text.format.type", fFormatType)},
			content: []pathField{t("instructions", fSystem), t("input", fInText), v("input.[]", fInMsg),
				v("input.[].role", fInRole),
				t("input.[].content", fInText), t("input.[].content.[].text", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{v("id", fResponseID), v("model", fResponseModel), v("status", fResponseStatus),
				v("incomplete_details.reason", fIncompleteReason), v("service_tier", fServiceTier),
				v("error.code", fErrorCode), v("error.message", fErrorMessage), v("error.type", fErrorType)},
				responsesUsage("")),
			content: []pathField{t("output.[].content.[].text", fOutText)},
		},
		sideEvent: {
			// Events carry the response object whole (created, completed,
			// failed, incomplete), a delta, or an error's code and message.
			paths: cat([]pathField{v("type", fEventType), v("delta", fContent),
				v("response.id", fResponseID), v("response.model", fResponseModel),
				v("response.status", fResponseStatus), v("response.incomplete_details.reason", fIncompleteReason),
				v("response.service_tier", fServiceTier),
				v("response.error.code", fErrorCode), v("response.error.message", fErrorMessage),
				v("code", fErrorCode), v("message", fErrorMessage)}, responsesUsage("response.")),
			content: []pathField{t("delta", fOutText)},
		},
	},
	model.GenAIMessages: {
		sideRequest: {
			paths: []pathField{v("model", fModel), v("stream", fStream), v("max_tokens", fMaxTokens),
				v("temperature", fTemperature), v("top_p", fTopP), v("top_k", fTopK),
				v("stop_sequences.[]", fStopElem)},
			content: []pathField{t("system", fSystem), t("system.[].text", fSystem), v("messages.[]", fInMsg),
				v("messages.[].role", fInRole),
				t("messages.[].content", fInText), t("messages.[].content.[].text", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{v("type", fType), v("id", fResponseID), v("model", fResponseModel),
				v("stop_reason", fFinishReason), v("usage.service_tier", fServiceTier),
				v("error.type", fErrorType), v("error.message", fErrorMessage)}, anthropicUsage("")),
			content: []pathField{t("content.[].text", fOutText)},
		},
		sideEvent: {
			paths: cat([]pathField{v("type", fEventType),
				v("message.id", fResponseID), v("message.model", fResponseModel),
				v("delta.stop_reason", fFinishReason), v("delta.text", fContent), v("delta.partial_json", fContent),
				v("error.type", fErrorType), v("error.message", fErrorMessage)},
				anthropicUsage("message."), anthropicUsage("")),
			content: []pathField{t("delta.text", fOutText)},
		},
	},
	model.GenAIOllamaChat: {
		sideRequest: {
			paths: ollamaRequest,
			content: []pathField{v("messages.[]", fInMsg), v("messages.[].role", fInRole),
				t("messages.[].content", fInText), t("system", fSystem)},
		},
		sideResponse: {
			paths:   ollamaResponse,
			content: []pathField{v("message.role", fOutRole), t("message.content", fOutText)},
		},
		sideEvent: {
			paths:   cat(ollamaResponse, []pathField{v("message.content", fContent), v("message.tool_calls", fContent)}),
			content: []pathField{t("message.content", fOutText)},
		},
	},
	model.GenAIOllamaGenerate: {
		sideRequest: {
			paths:   ollamaRequest,
			content: []pathField{t("prompt", fInText), t("system", fSystem)},
		},
		sideResponse: {paths: ollamaResponse, content: []pathField{t("response", fOutText)}},
		sideEvent: {
			paths:   cat(ollamaResponse, []pathField{v("response", fContent)}),
			content: []pathField{t("response", fOutText)},
		},
	},
	model.GenAIOllamaEmbed: {
		sideRequest:  {paths: []pathField{v("model", fModel), v("dimensions", fDimensions)}},
		sideResponse: {paths: ollamaResponse},
	},
}

// watched holds the jscan path sets built from specs, without content and
// with it. They are built once and only read afterwards.
var watched = func() (w [len(specs)][sides][2]*jscan.Paths) {
	for api := range specs {
		for sd := range sides {
			sp := specs[api][sd]
			for withContent := range 2 {
				p := jscan.NewPaths()
				add := func(pf pathField) {
					if pf.text {
						p.Text(pf.path, int(pf.f))
					} else {
						p.Value(pf.path, int(pf.f))
					}
				}
				for _, pf := range sp.paths {
					add(pf)
				}
				if withContent == 1 {
					for _, pf := range sp.content {
						add(pf)
					}
				}
				w[api][sd][withContent] = p
			}
		}
	}
	return w
}()

// pathsFor is the paths of api and side.
func pathsFor(api model.GenAIAPI, sd side, content bool) *jscan.Paths {
	if int(api) >= len(specs) {
		api = model.GenAINone
	}
	c := 0
	if content {
		c = 1
	}
	return watched[api][sd][c]
}
