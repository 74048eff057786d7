package modelspec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Client drivers, as Call.Driver spells them.
const (
	DriverGo     = "go"     // tests/genaiapp: openai-go, anthropic-sdk-go, net/http
	DriverPython = "python" // tests/testdata/pygenai/client.py: http.client
	DriverNode   = "node"   // tests/testdata/nodegenai/client.mjs: the openai npm package
)

// Call is one model call a client driver made, as the client saw it. Every
// driver prints one Call per line as JSON (ReadCalls reads them); the Go
// driver, a module of its own, repeats this shape in tests/genaiapp.
type Call struct {
	// Driver is one of the Driver constants; Client names the library that
	// made the call ("openai-go", "anthropic-sdk-go", "net/http",
	// "http.client", "openai-node").
	Driver string `json:"driver"`
	Client string `json:"client"`
	// API is one of the API constants; Index numbers the calls of one run
	// from 0; PID is the calling process.
	API   string `json:"api"`
	Index int    `json:"index"`
	PID   int    `json:"pid"`
	URL   string `json:"url"`
	// Proto is the response's protocol when the client can tell
	// ("HTTP/1.1", "HTTP/2.0"); TLS says the URL was https.
	Proto string `json:"proto,omitempty"`
	TLS   bool   `json:"tls"`

	// Model as sent (options suffix included); Stream and IncludeUsage as
	// requested; MaxTokens as sent (0: not sent); PromptBytes is the
	// prompt's length.
	Model        string `json:"model"`
	Stream       bool   `json:"stream"`
	IncludeUsage bool   `json:"include_usage,omitempty"`
	MaxTokens    int64  `json:"max_tokens,omitempty"`
	PromptBytes  int    `json:"prompt_bytes"`

	// Status is the HTTP status (0: no response). RequestID is the
	// response's X-Request-Id (tests/modelserver sends "req_zt<seq>", which
	// ties the call to the server's Exchange).
	Status        int      `json:"status"`
	RequestID     string   `json:"request_id,omitempty"`
	ResponseID    string   `json:"response_id,omitempty"`
	ResponseModel string   `json:"response_model,omitempty"`
	FinishReasons []string `json:"finish_reasons,omitempty"`
	// Usage as the API reported it, in its own meaning (see Options); nil
	// when none came.
	Usage *Usage `json:"usage,omitempty"`
	// Chunks counts the events with content in a stream, Events every event
	// or line the client got; Text is the first choice's content.
	Chunks     int    `json:"chunks"`
	Events     int    `json:"events"`
	Text       string `json:"text,omitempty"`
	Embeddings int    `json:"embeddings,omitempty"`

	// ErrorType and ErrorMessage come from the API's error object (in an
	// error response or in the stream); Error is what the client library
	// returned or raised (transport errors included).
	ErrorType    string `json:"error_type,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	Error        string `json:"error,omitempty"`

	Times CallTimes `json:"times"`
}

// CallTimes are wall-clock times the client took (CLOCK_REALTIME, as span
// timestamps): Start just before the library was asked to call, Head when
// the response head arrived (where the client can see it), FirstChunk and
// FirstToken when the first event and the first event with content came
// out of the library, End when the call returned or the stream ended.
type CallTimes struct {
	Start      time.Time `json:"start"`
	Head       time.Time `json:"head,omitzero"`
	FirstChunk time.Time `json:"first_chunk,omitzero"`
	FirstToken time.Time `json:"first_token,omitzero"`
	End        time.Time `json:"end"`
}

// ReadCalls reads a driver's output: one Call per line. Lines that are not
// JSON objects (a driver's own messages) are an error, so that a driver that
// prints something else is noticed.
func ReadCalls(r io.Reader) ([]Call, error) {
	var calls []Call
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c Call
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return calls, fmt.Errorf("line %d: %w: %.200s", n, err, line)
		}
		calls = append(calls, c)
	}
	return calls, sc.Err()
}

// Batch is what a test asks a client driver to do: N calls of one API. All
// drivers take the same flags (Args).
type Batch struct {
	API    string // one of the API constants (the Node driver: OpenAI's only)
	N      int    // 0: one call
	Stream bool
	// IncludeUsage asks an OpenAI chat or completions stream for its usage
	// chunk (stream_options.include_usage).
	IncludeUsage bool
	Model        string // "": the drivers' "gpt-test"
	Prompt       string // "": the drivers' default prompt
	// PromptBytes pads the prompt to this many bytes (a large-prompt test).
	PromptBytes int
	// MaxTokens: 0 leaves the drivers' default (64); negative sends none
	// (Anthropic's required max_tokens stays 64).
	MaxTokens int
	// Inputs is the number of inputs of an embeddings call (0: one).
	Inputs int
	// Parallel is the number of calls in flight at once (0 or 1: one after
	// the other). The Go driver only; its lines then come in completion
	// order.
	Parallel int
}

// Args renders the batch as the drivers' flags, for a server at base
// ("http://127.0.0.1:PORT" or "https://…").
func (b Batch) Args(base string) []string {
	args := []string{"--base", base}
	if b.API != "" {
		args = append(args, "--api", b.API)
	}
	if b.N > 0 {
		args = append(args, "--n", strconv.Itoa(b.N))
	}
	if b.Stream {
		args = append(args, "--stream")
	}
	if b.IncludeUsage {
		args = append(args, "--include-usage")
	}
	if b.Model != "" {
		args = append(args, "--model", b.Model)
	}
	if b.Prompt != "" {
		args = append(args, "--prompt", b.Prompt)
	}
	if b.PromptBytes > 0 {
		args = append(args, "--prompt-bytes", strconv.Itoa(b.PromptBytes))
	}
	switch {
	case b.MaxTokens > 0:
		args = append(args, "--max-tokens", strconv.Itoa(b.MaxTokens))
	case b.MaxTokens < 0:
		args = append(args, "--max-tokens", "0")
	}
	if b.Inputs > 0 {
		args = append(args, "--inputs", strconv.Itoa(b.Inputs))
	}
	if b.Parallel > 1 {
		args = append(args, "--parallel", strconv.Itoa(b.Parallel))
	}
	return args
}
