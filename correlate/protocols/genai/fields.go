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

func val(path string, f field) pathField { return pathField{path: path, f: f} }
func txt(path string, f field) pathField { return pathField{path: path, f: f, text: true} }

// openAIUsage is usage in the chat and completions shape.
func openAIUsage(prefix string) []pathField {
	return []pathField{
		val(prefix+"usage.prompt_tokens", fInputTokens),
		val(prefix+"usage.completion_tokens", fOutputTokens),
		val(prefix+"usage.prompt_tokens_details.cached_tokens", fCacheRead),
		val(prefix+"usage.prompt_tokens_details.cache_write_tokens", fCacheCreation),
		val(prefix+"usage.completion_tokens_details.reasoning_tokens", fReasoning),
	}
}

// responsesUsage is usage in the Responses API's shape.
func responsesUsage(prefix string) []pathField {
	return []pathField{
		val(prefix+"usage.input_tokens", fInputTokens),
		val(prefix+"usage.output_tokens", fOutputTokens),
		val(prefix+"usage.input_tokens_details.cached_tokens", fCacheRead),
		val(prefix+"usage.input_tokens_details.cache_write_tokens", fCacheCreation),
		val(prefix+"usage.output_tokens_details.reasoning_tokens", fReasoning),
	}
}

func anthropicUsage(prefix string) []pathField {
	return []pathField{
		val(prefix+"usage.input_tokens", fInputUncached),
		val(prefix+"usage.output_tokens", fOutputTokens),
		val(prefix+"usage.cache_read_input_tokens", fCacheRead),
		val(prefix+"usage.cache_creation_input_tokens", fCacheCreation),
		val(prefix+"usage.output_tokens_details.thinking_tokens", fReasoning),
	}
}

var openAIError = []pathField{
	val("error.type", fErrorType), val("error.code", fErrorCode), val("error.message", fErrorMessage),
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
	val("model", fModel), val("stream", fStream), val("max_tokens", fMaxTokens),
	val("temperature", fTemperature), val("top_p", fTopP), val("seed", fSeed), val("n", fChoiceCount),
	val("frequency_penalty", fFrequencyPenalty), val("presence_penalty", fPresencePenalty),
	val("stop", fStop), val("stop.[]", fStopElem), val("service_tier", fRequestServiceTier),
}

// ollamaRequest is what Ollama's requests share: the model, the stream
// flag, the format and the sampling options.
var ollamaRequest = []pathField{
	val("model", fModel), val("stream", fStream), val("format", fOllamaFormat),
	val("options.num_predict", fMaxTokens), val("options.temperature", fTemperature), val("options.top_p", fTopP),
	val("options.top_k", fTopK), val("options.seed", fSeed), val("options.stop", fStop), val("options.stop.[]", fStopElem),
	val("options.frequency_penalty", fFrequencyPenalty), val("options.presence_penalty", fPresencePenalty),
}

var ollamaResponse = []pathField{
	val("model", fResponseModel), val("done", fDone), val("done_reason", fFinishReason),
	val("prompt_eval_count", fInputTokens), val("eval_count", fOutputTokens), val("error", fErrorText),
}

// specs is the paths of every API and side.
var specs = [...][sides]spec{
	model.GenAIChatCompletions: {
		sideRequest: {
			paths: cat(openAIRequest, []pathField{val("max_completion_tokens", fMaxCompletionTokens),
				val("response_format.type", fFormatType)}),
			content: []pathField{val("messages.[]", fInMsg), val("messages.[].role", fInRole),
				txt("messages.[].content", fInText), txt("messages.[].content.[].text", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{val("id", fResponseID), val("model", fResponseModel),
				val("choices.[].finish_reason", fFinishReason), val("service_tier", fServiceTier),
				val("system_fingerprint", fSystemFingerprint)}, openAIUsage(""), openAIError),
			content: []pathField{val("choices.[].message.role", fOutRole), txt("choices.[].message.content", fOutText)},
		},
		sideEvent: {
			paths: cat([]pathField{val("id", fResponseID), val("model", fResponseModel),
				val("choices.[].finish_reason", fFinishReason), val("service_tier", fServiceTier),
				val("system_fingerprint", fSystemFingerprint),
				val("choices.[].delta.content", fContent), val("choices.[].delta.refusal", fContent),
				val("choices.[].delta.tool_calls", fContent)}, openAIUsage(""), openAIError),
			content: []pathField{txt("choices.[].delta.content", fOutText)},
		},
	},
	model.GenAICompletions: {
		sideRequest: {
			paths:   openAIRequest,
			content: []pathField{txt("prompt", fInText), txt("prompt.[]", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{val("id", fResponseID), val("model", fResponseModel),
				val("choices.[].finish_reason", fFinishReason), val("system_fingerprint", fSystemFingerprint)},
				openAIUsage(""), openAIError),
			content: []pathField{txt("choices.[].text", fOutText)},
		},
		sideEvent: {
			paths: cat([]pathField{val("id", fResponseID), val("model", fResponseModel),
				val("choices.[].finish_reason", fFinishReason), val("system_fingerprint", fSystemFingerprint),
				val("choices.[].text", fContent)}, openAIUsage(""), openAIError),
			content: []pathField{txt("choices.[].text", fOutText)},
		},
	},
	model.GenAIEmbeddings: {
		sideRequest: {paths: []pathField{val("model", fModel), val("encoding_format", fEncodingFormat),
			val("dimensions", fDimensions)}},
		sideResponse: {paths: cat([]pathField{val("model", fResponseModel), val("usage.prompt_tokens", fInputTokens)},
			openAIError)},
	},
	model.GenAIResponses: {
		sideRequest: {
			paths: []pathField{val("model", fModel), val("stream", fStream), val("max_output_tokens", fMaxTokens),
				val("temperature", fTemperature), val("top_p", fTopP), val("service_tier", fRequestServiceTier),
				val("text.format.type", fFormatType)},
			content: []pathField{txt("instructions", fSystem), txt("input", fInText), val("input.[]", fInMsg),
				val("input.[].role", fInRole),
				txt("input.[].content", fInText), txt("input.[].content.[].text", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{val("id", fResponseID), val("model", fResponseModel), val("status", fResponseStatus),
				val("incomplete_details.reason", fIncompleteReason), val("service_tier", fServiceTier),
				val("error.code", fErrorCode), val("error.message", fErrorMessage), val("error.type", fErrorType)},
				responsesUsage("")),
			content: []pathField{txt("output.[].content.[].text", fOutText)},
		},
		sideEvent: {
			// Events carry the response object whole (created, completed,
			// failed, incomplete), a delta, or an error's code and message.
			paths: cat([]pathField{val("type", fEventType), val("delta", fContent),
				val("response.id", fResponseID), val("response.model", fResponseModel),
				val("response.status", fResponseStatus), val("response.incomplete_details.reason", fIncompleteReason),
				val("response.service_tier", fServiceTier),
				val("response.error.code", fErrorCode), val("response.error.message", fErrorMessage),
				val("code", fErrorCode), val("message", fErrorMessage)}, responsesUsage("response.")),
			content: []pathField{txt("delta", fOutText)},
		},
	},
	model.GenAIMessages: {
		sideRequest: {
			paths: []pathField{val("model", fModel), val("stream", fStream), val("max_tokens", fMaxTokens),
				val("temperature", fTemperature), val("top_p", fTopP), val("top_k", fTopK),
				val("stop_sequences.[]", fStopElem)},
			content: []pathField{txt("system", fSystem), txt("system.[].text", fSystem), val("messages.[]", fInMsg),
				val("messages.[].role", fInRole),
				txt("messages.[].content", fInText), txt("messages.[].content.[].text", fInText)},
		},
		sideResponse: {
			paths: cat([]pathField{val("type", fType), val("id", fResponseID), val("model", fResponseModel),
				val("stop_reason", fFinishReason), val("usage.service_tier", fServiceTier),
				val("error.type", fErrorType), val("error.message", fErrorMessage)}, anthropicUsage("")),
			content: []pathField{txt("content.[].text", fOutText)},
		},
		sideEvent: {
			paths: cat([]pathField{val("type", fEventType),
				val("message.id", fResponseID), val("message.model", fResponseModel),
				val("delta.stop_reason", fFinishReason), val("delta.text", fContent), val("delta.partial_json", fContent),
				val("error.type", fErrorType), val("error.message", fErrorMessage)},
				anthropicUsage("message."), anthropicUsage("")),
			content: []pathField{txt("delta.text", fOutText)},
		},
	},
	model.GenAIOllamaChat: {
		sideRequest: {
			paths: ollamaRequest,
			content: []pathField{val("messages.[]", fInMsg), val("messages.[].role", fInRole),
				txt("messages.[].content", fInText), txt("system", fSystem)},
		},
		sideResponse: {
			paths:   ollamaResponse,
			content: []pathField{val("message.role", fOutRole), txt("message.content", fOutText)},
		},
		sideEvent: {
			paths:   cat(ollamaResponse, []pathField{val("message.content", fContent), val("message.tool_calls", fContent)}),
			content: []pathField{txt("message.content", fOutText)},
		},
	},
	model.GenAIOllamaGenerate: {
		sideRequest: {
			paths:   ollamaRequest,
			content: []pathField{txt("prompt", fInText), txt("system", fSystem)},
		},
		sideResponse: {paths: ollamaResponse, content: []pathField{txt("response", fOutText)}},
		sideEvent: {
			paths:   cat(ollamaResponse, []pathField{val("response", fContent)}),
			content: []pathField{txt("response", fOutText)},
		},
	},
	model.GenAIOllamaEmbed: {
		sideRequest:  {paths: []pathField{val("model", fModel), val("dimensions", fDimensions)}},
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
