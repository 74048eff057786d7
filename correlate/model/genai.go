package model

import "time"

// GenAIAPI is the wire shape of a call to a model: which API's request and
// response bodies the exchange was read as.
type GenAIAPI uint8

// The APIs zerotrace reads.
const (
	GenAINone GenAIAPI = iota
	// OpenAI-compatible APIs (OpenAI, vLLM, llama.cpp, LM Studio, LiteLLM,
	// most gateways).
	GenAIChatCompletions // POST …/chat/completions
	GenAICompletions     // POST …/v1/completions (legacy text completions)
	GenAIEmbeddings      // POST …/v1/embeddings
	GenAIResponses       // POST …/v1/responses
	// Anthropic messages, POST …/v1/messages.
	GenAIMessages
	// Ollama's own API.
	GenAIOllamaChat     // POST /api/chat
	GenAIOllamaGenerate // POST /api/generate
	GenAIOllamaEmbed    // POST /api/embed
	genAIAPIs
)

var genAIAPINames = [genAIAPIs]string{
	GenAIChatCompletions: "openai.chat_completions",
	GenAICompletions:     "openai.completions",
	GenAIEmbeddings:      "openai.embeddings",
	GenAIResponses:       "openai.responses",
	GenAIMessages:        "anthropic.messages",
	GenAIOllamaChat:      "ollama.chat",
	GenAIOllamaGenerate:  "ollama.generate",
	GenAIOllamaEmbed:     "ollama.embed",
}

// String names the API as the configuration writes it
// ("openai.chat_completions"); "" for GenAINone.
func (a GenAIAPI) String() string {
	if a < genAIAPIs {
		return genAIAPINames[a]
	}
	return ""
}

// ParseGenAIAPI is the API a name given by String stands for.
func ParseGenAIAPI(name string) (GenAIAPI, bool) {
	for a := GenAIChatCompletions; a < genAIAPIs; a++ {
		if genAIAPINames[a] == name {
			return a, true
		}
	}
	return GenAINone, false
}

// GenAIAPINames lists every API name ParseGenAIAPI accepts.
func GenAIAPINames() []string {
	return append([]string(nil), genAIAPINames[GenAIChatCompletions:]...)
}

// GenAIParams says which of a request's optional sampling parameters were
// present (the numbers themselves have no value that means "absent").
type GenAIParams uint8

// Parameters.
const (
	GenAITemperature GenAIParams = 1 << iota
	GenAITopP
	GenAITopK
	GenAIFrequencyPenalty
	GenAIPresencePenalty
)

// GenAIUsage is what a call cost in tokens, as the API reported it (or, when
// Estimated, as counted from a stream). Counts are -1 when unknown. Input
// includes the cached input tokens (read and written), Output the reasoning
// tokens, whatever the API's own convention: the semantic conventions'.
type GenAIUsage struct {
	Input, Output            int64
	CacheRead, CacheCreation int64
	Reasoning                int64
	// Estimated: Output was not reported, it is the number of content
	// chunks of the stream.
	Estimated bool
}

// GenAIEnd is how a model call's response came to its end.
type GenAIEnd uint8

// Ends.
const (
	// GenAIEndUnknown: the capture stopped following the response before
	// its end (its body was not seen).
	GenAIEndUnknown GenAIEnd = iota
	// GenAIEndDone: the API said it was complete: a stream's terminal
	// event ([DONE], message_stop, response.completed, "done":true) or a
	// whole JSON document.
	GenAIEndDone
	// GenAIEndFraming: the HTTP body ended (Content-Length, last chunk,
	// end of stream) without the API saying so.
	GenAIEndFraming
	// GenAIEndClosed: the connection closed first.
	GenAIEndClosed
)

// GenAICut says which parts of an exchange the capture did not see whole.
type GenAICut uint8

// Cuts.
const (
	// GenAICutRequest: bytes of the request body were not seen (the body
	// was larger than what was copied); fields past what was seen are
	// missing, unless the body's tail showed them.
	GenAICutRequest GenAICut = 1 << iota
	// GenAICutResponse: the same for the response body.
	GenAICutResponse
	// GenAIEncoded: the response body was compressed (Content-Encoding),
	// and not read.
	GenAIEncoded
)

// GenAIMessage is one message of a conversation, captured only when the
// configuration asks for content (gen_ai.capture_content), its text cut at
// the configured size.
type GenAIMessage struct {
	Role string
	// Text is the message's text parts, joined.
	Text string
	// FinishReason is an output message's.
	FinishReason string
}

// maxFinishReasons bounds the finish reasons kept, one per choice.
const maxFinishReasons = 4

// GenAI is one call to a model API. It refines the span's HTTP exchange,
// which keeps the request's URL, status and peer: a span with GenAI set
// has HTTP set too. Fields the capture did not see stay at their zero
// value, or -1 for counts, and produce no attribute.
type GenAI struct {
	API GenAIAPI
	// Operation is gen_ai.operation.name ("chat", "text_completion",
	// "embeddings"); Provider gen_ai.provider.name ("openai",
	// "anthropic", "ollama", or what the configuration names).
	Operation, Provider string

	// The request.
	RequestModel string
	// MaxTokens, Seed, ChoiceCount and Dimensions are -1 when absent.
	MaxTokens, Seed, ChoiceCount, Dimensions int64
	Temperature, TopP, TopK                  float64
	FrequencyPenalty, PresencePenalty        float64
	// Params says which of the floats above the request held.
	Params GenAIParams
	// Stop holds the first stop sequences (NStop of them).
	Stop  [maxFinishReasons]string
	NStop uint8
	// Stream: the response was asked for (or came) as a stream.
	Stream bool
	// OutputType is gen_ai.output.type: "json" when a JSON format was
	// asked for, "" otherwise.
	OutputType string
	// EncodingFormat is an embeddings request's encoding_format.
	EncodingFormat string
	// RequestServiceTier is the service tier asked for (OpenAI).
	RequestServiceTier string

	// The response.
	ResponseID, ResponseModel string
	// FinishReasons holds the finish reasons as the API spells them, one
	// per choice, NFinish of them.
	FinishReasons [maxFinishReasons]string
	NFinish       uint8
	// ServiceTier and SystemFingerprint are the response's (OpenAI).
	ServiceTier, SystemFingerprint string
	Usage                          GenAIUsage

	// A streamed response: when its first chunk (event, line) and its
	// first content (a text, tool-call or refusal delta) arrived or left,
	// when its last chunk did, and how many chunks and content chunks
	// there were. Zero when not streamed.
	FirstChunk, FirstToken, LastChunk time.Time
	Chunks, ContentChunks             int32

	// ErrorType and ErrorMessage are the API's error object's ("" when
	// none): its type, else its code, else the HTTP status; its message.
	ErrorType, ErrorMessage string
	End                     GenAIEnd
	Cut                     GenAICut

	// CostUSD is what the call cost by the configured price table, when
	// Priced.
	CostUSD float64
	Priced  bool

	// Content, only when the configuration asks for it: the system
	// instructions, the messages sent and the messages answered, each
	// text cut at the configured size (ContentCut then says so).
	SystemInstructions string
	Input, Output      []GenAIMessage
	ContentCut         bool
}

// Reset empties g for another call, every count unknown.
func (g *GenAI) Reset() {
	*g = GenAI{MaxTokens: -1, Seed: -1, ChoiceCount: -1, Dimensions: -1,
		Usage: GenAIUsage{Input: -1, Output: -1, CacheRead: -1, CacheCreation: -1, Reasoning: -1}}
}

// NewGenAI returns an empty GenAI exchange, every count unknown.
func NewGenAI() *GenAI {
	g := &GenAI{}
	g.Reset()
	return g
}

// AddFinishReason records one more finish reason, beyond the bound
// dropped.
func (g *GenAI) AddFinishReason(r string) {
	if int(g.NFinish) < len(g.FinishReasons) {
		g.FinishReasons[g.NFinish] = r
		g.NFinish++
	}
}

// AddStop records one more stop sequence, beyond the bound dropped.
func (g *GenAI) AddStop(s string) {
	if int(g.NStop) < len(g.Stop) {
		g.Stop[g.NStop] = s
		g.NStop++
	}
}

// TokenStart is when the answer's first token came: the first content
// chunk, else (a stream whose content was not seen) the first chunk; zero
// when neither is known.
func (g *GenAI) TokenStart() time.Time {
	if !g.FirstToken.IsZero() {
		return g.FirstToken
	}
	return g.FirstChunk
}

// Failed says whether the call failed by the API's word: an error object
// or a stream that stopped short.
func (g *GenAI) Failed() bool { return g.ErrorType != "" }
