package modelspec

import "time"

// API names, as Exchange.API and the clients' reports spell them.
const (
	OpenAIChat        = "openai.chat"        // POST …/chat/completions
	OpenAICompletions = "openai.completions" // POST …/completions
	OpenAIEmbeddings  = "openai.embeddings"  // POST …/embeddings
	OpenAIResponses   = "openai.responses"   // POST …/responses
	AnthropicMessages = "anthropic.messages" // POST …/v1/messages
	OllamaChat        = "ollama.chat"        // POST /api/chat
	OllamaGenerate    = "ollama.generate"    // POST /api/generate
	OllamaEmbed       = "ollama.embed"       // POST /api/embed
)

// StatsPath is where a test model server serves its exchanges as JSON
// (Stats); ?since=N gives only those with Seq > N. Requests to it are not
// exchanges.
const StatsPath = "/_stats"

// Stats is the document served at StatsPath.
type Stats struct {
	Exchanges []Exchange `json:"exchanges"`
}

// Exchange is one request a test model server answered, as it saw it: the
// truth a test compares a span with.
type Exchange struct {
	// Seq numbers the server's exchanges from 1.
	Seq int `json:"seq"`
	// API is one of the API constants; "" for a path the server does not
	// serve (answered 404).
	API    string `json:"api"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Proto is "HTTP/1.1" or "HTTP/2.0"; TLS says whether the connection was
	// encrypted.
	Proto  string `json:"proto"`
	TLS    bool   `json:"tls"`
	Remote string `json:"remote"`
	// Headers holds the request headers a test may look at, lower-cased:
	// user-agent, content-type, traceparent, tracestate and the options
	// header.
	Headers map[string]string `json:"headers,omitempty"`
	// Options are the options in effect, in Options.String's syntax.
	Options  string   `json:"options"`
	Request  Request  `json:"request"`
	Response Response `json:"response"`
	Times    Times    `json:"times"`
}

// Request is what the server read from the request body.
type Request struct {
	// Bytes is the body's length; Valid says it parsed as JSON.
	Bytes int  `json:"bytes"`
	Valid bool `json:"valid"`
	// Model as sent, options suffix included.
	Model string `json:"model"`
	// Stream is the request's stream flag (Ollama: true unless false was
	// sent); IncludeUsage is OpenAI's stream_options.include_usage.
	Stream       bool `json:"stream"`
	IncludeUsage bool `json:"include_usage,omitempty"`
	// MaxTokens is the first of max_tokens, max_completion_tokens,
	// max_output_tokens and Ollama's options.num_predict that was sent.
	MaxTokens   *int64   `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	// Inputs is the number of embedding inputs.
	Inputs int `json:"inputs,omitempty"`
}

// Response is what the server sent.
type Response struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	// Stream says the answer was streamed (SSE, or NDJSON for Ollama).
	Stream bool   `json:"stream"`
	ID     string `json:"id,omitempty"`
	Model  string `json:"model,omitempty"`
	// FinishReasons as the API spelled them, one per choice; for the
	// Responses API the response's status ("completed", "incomplete") and,
	// when incomplete, the reason after it.
	FinishReasons []string `json:"finish_reasons,omitempty"`
	// Usage is nil when no usage was sent.
	Usage *Usage `json:"usage,omitempty"`
	// Chunks counts the content chunks written per choice; Events every SSE
	// event or NDJSON line (role chunk, usage chunk, [DONE] included).
	Chunks int `json:"chunks"`
	Events int `json:"events"`
	// Text is the first choice's content as sent.
	Text string `json:"text,omitempty"`
	// ErrorType and ErrorMessage are from the error object sent, in the body
	// of an error response or in the stream.
	ErrorType    string `json:"error_type,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	// Cut says the server closed the connection (or reset the stream)
	// before the response was complete; Malformed that it sent invalid JSON.
	Cut       bool `json:"cut,omitempty"`
	Malformed bool `json:"malformed,omitempty"`
	// ClientGone says the client went away (or a write failed) before the
	// server was done.
	ClientGone bool `json:"client_gone,omitempty"`
	// Bytes counts the body bytes written.
	Bytes int `json:"bytes"`
}

// Usage is a response's token counts in the API's own meaning (see
// Options).
type Usage struct {
	Input      int `json:"input"`
	Output     int `json:"output"`
	Cached     int `json:"cached"`
	CacheWrite int `json:"cache_write"`
	Reasoning  int `json:"reasoning"`
}

// Times are wall-clock times taken by the server (CLOCK_REALTIME, the clock
// span timestamps use).
type Times struct {
	// Start: the handler began (request head read). BodyRead: the request
	// body was read; the schedule of Options counts from here.
	Start    time.Time `json:"start"`
	BodyRead time.Time `json:"body_read"`
	// Head: the response head was flushed. Zero for a non-streamed answer
	// (unless cut), whose head goes out with its body.
	Head time.Time `json:"head,omitzero"`
	// FirstChunk: the first event was written (for OpenAI chat with Head set,
	// the role-only chunk); FirstToken: the first content delta.
	FirstChunk time.Time `json:"first_chunk,omitzero"`
	FirstToken time.Time `json:"first_token,omitzero"`
	// Chunks holds when each content chunk was written, as offsets from
	// BodyRead.
	Chunks []time.Duration `json:"chunks,omitempty"`
	// End: the write (or flush) that sent the response's last bytes began,
	// so a client cannot have read them before; the handler's end when
	// nothing was written.
	End time.Time `json:"end"`
}
