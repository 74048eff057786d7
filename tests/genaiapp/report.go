package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// call is one model call as this client saw it. Its JSON is the Call of
// tests/internal/modelspec (this module cannot import the main one, so the
// shape is repeated; the tests decode it with modelspec.Call).
type call struct {
	Driver string `json:"driver"`
	Client string `json:"client"`
	API    string `json:"api"`
	Index  int    `json:"index"`
	PID    int    `json:"pid"`
	URL    string `json:"url"`
	Proto  string `json:"proto,omitempty"`
	TLS    bool   `json:"tls"`

	Model        string `json:"model"`
	Stream       bool   `json:"stream"`
	IncludeUsage bool   `json:"include_usage,omitempty"`
	MaxTokens    int64  `json:"max_tokens,omitempty"`
	PromptBytes  int    `json:"prompt_bytes"`

	Status        int      `json:"status"`
	RequestID     string   `json:"request_id,omitempty"`
	ResponseID    string   `json:"response_id,omitempty"`
	ResponseModel string   `json:"response_model,omitempty"`
	FinishReasons []string `json:"finish_reasons,omitempty"`
	Usage         *usage   `json:"usage,omitempty"`
	Chunks        int      `json:"chunks"`
	Events        int      `json:"events"`
	Text          string   `json:"text,omitempty"`
	Embeddings    int      `json:"embeddings,omitempty"`

	ErrorType    string `json:"error_type,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	Error        string `json:"error,omitempty"`

	Times times `json:"times"`
}

// usage is the token counts as the API reported them, in its own meaning.
type usage struct {
	Input      int64 `json:"input"`
	Output     int64 `json:"output"`
	Cached     int64 `json:"cached"`
	CacheWrite int64 `json:"cache_write"`
	Reasoning  int64 `json:"reasoning"`
}

// times are wall-clock times taken around the SDK: Start before the call,
// Head when the response head arrived (seen by a middleware), FirstChunk and
// FirstToken when the first event and the first content delta came out of
// the SDK's stream, End when the call returned or the stream ended.
type times struct {
	Start      time.Time `json:"start"`
	Head       time.Time `json:"head,omitzero"`
	FirstChunk time.Time `json:"first_chunk,omitzero"`
	FirstToken time.Time `json:"first_token,omitzero"`
	End        time.Time `json:"end"`
}

// chunk records an event of a stream: the first one's time, and the first
// with content.
func (c *call) chunk(content string) {
	now := time.Now()
	c.Events++
	if c.Times.FirstChunk.IsZero() {
		c.Times.FirstChunk = now
	}
	if content != "" {
		c.Chunks++
		c.Text += content
		if c.Times.FirstToken.IsZero() {
			c.Times.FirstToken = now
		}
	}
}

// observe is an HTTP round trip wrapper (an SDK middleware) that notes when
// the response head came, its status, protocol and request id.
func (c *call) observe(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	c.TLS = req.URL.Scheme == "https"
	resp, err := next(req)
	if err == nil {
		c.Times.Head = time.Now()
		c.Status = resp.StatusCode
		c.Proto = resp.Proto
		c.RequestID = resp.Header.Get("X-Request-Id")
	}
	return resp, err
}

// reporter writes one JSON line per call.
type reporter struct {
	mu sync.Mutex
	w  io.Writer
}

func (r *reporter) report(c *call) {
	line, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Write(append(line, '\n'))
}

var stdoutReporter = &reporter{w: os.Stdout}
