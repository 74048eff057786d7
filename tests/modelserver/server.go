package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/modelspec"
)

const (
	// maxBody bounds a request body (a test sends prompts of a few MB).
	maxBody = 64 << 20
	// maxKept bounds the exchanges kept for /_stats (the oldest go first).
	maxKept = 10000
)

// server answers the model APIs and keeps what it did.
type server struct {
	defaults modelspec.Options
	log      io.Writer // each finished exchange as a JSON line, or nil
	verbose  io.Writer // a summary line per exchange, or nil
	dump     string    // directory for the bodies of each exchange, or ""

	mu   sync.Mutex
	seq  int
	done []modelspec.Exchange
}

func newServer(defaults modelspec.Options) *server {
	return &server{defaults: defaults}
}

// ServeHTTP routes by the path's end, so that a base URL with a prefix
// (http://host/openai/v1) works as well as the APIs' own paths.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == modelspec.StatsPath {
		s.serveStats(w, r)
		return
	}
	x := s.begin(w, r)
	defer s.finish(x)
	if x.api == nil {
		x.api = openAIChat{} // its error shape
		x.writeError(http.StatusNotFound, "invalid_request_error", "unknown path "+r.URL.Path)
		x.rec.API = ""
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		x.writeError(http.StatusMethodNotAllowed, "invalid_request_error", "use POST")
		return
	}
	if !x.readRequest(r) {
		return
	}
	x.respond()
}

// apiFor picks the API by the path's end.
func apiFor(path string) api {
	switch {
	case strings.HasSuffix(path, "/api/chat"):
		return ollama{kind: modelspec.OllamaChat}
	case strings.HasSuffix(path, "/api/generate"):
		return ollama{kind: modelspec.OllamaGenerate}
	case strings.HasSuffix(path, "/api/embed"):
		return ollama{kind: modelspec.OllamaEmbed}
	case strings.HasSuffix(path, "/chat/completions"):
		return openAIChat{}
	case strings.HasSuffix(path, "/completions"):
		return openAICompletions{}
	case strings.HasSuffix(path, "/embeddings"):
		return openAIEmbeddings{}
	case strings.HasSuffix(path, "/responses"):
		return openAIResponses{}
	case strings.HasSuffix(path, "/messages"):
		return anthropic{}
	}
	return nil
}

func (s *server) begin(w http.ResponseWriter, r *http.Request) *exchange {
	now := time.Now()
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	x := &exchange{
		w:    w,
		rc:   http.NewResponseController(w),
		api:  apiFor(r.URL.Path),
		opts: s.defaults,
		rec: modelspec.Exchange{
			Seq:    seq,
			Method: r.Method,
			Path:   r.URL.Path,
			Proto:  r.Proto,
			TLS:    r.TLS != nil,
			Remote: r.RemoteAddr,
		},
		created: now.Unix(),
	}
	x.rec.Times.Start = now
	x.rec.Times.BodyRead = now
	if x.api != nil {
		x.rec.API = x.api.name()
	}
	for _, h := range []string{"User-Agent", "Content-Type", "Traceparent", "Tracestate", modelspec.OptionsHeader} {
		if v := r.Header.Get(h); v != "" {
			if x.rec.Headers == nil {
				x.rec.Headers = map[string]string{}
			}
			x.rec.Headers[strings.ToLower(h)] = v
		}
	}
	x.header = r.Header.Get(modelspec.OptionsHeader)
	x.ctx = r.Context()
	if s.dump != "" {
		x.respBody = new(bytes.Buffer)
	}
	return x
}

// finish keeps the exchange. It runs deferred, also when the handler ends by
// panicking with http.ErrAbortHandler to cut the connection.
func (s *server) finish(x *exchange) {
	if x.rec.Times.End.IsZero() {
		x.rec.Times.End = time.Now()
	}
	x.rec.Options = x.opts.String()
	if x.text.Len() > 0 {
		x.rec.Response.Text = x.text.String()
	}
	if s.dump != "" {
		base := filepath.Join(s.dump, strconv.Itoa(x.rec.Seq))
		// A failed dump loses a golden file, not the exchange: say so.
		if err := os.WriteFile(base+".request", x.reqBody, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "modelserver: dumping #%d: %v\n", x.rec.Seq, err)
		}
		if err := os.WriteFile(base+".response", x.respBody.Bytes(), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "modelserver: dumping #%d: %v\n", x.rec.Seq, err)
		}
	}
	s.mu.Lock()
	s.done = append(s.done, x.rec)
	if len(s.done) > maxKept {
		s.done = append(s.done[:0:0], s.done[len(s.done)-maxKept:]...)
	}
	s.mu.Unlock()
	if s.log != nil || s.verbose != nil {
		line, _ := json.Marshal(x.rec)
		if s.log != nil {
			s.log.Write(append(line, '\n'))
		}
		if s.verbose != nil {
			resp := x.rec.Response
			fmt.Fprintf(s.verbose, "modelserver: #%d %s %s %s %s status=%d stream=%v chunks=%d cut=%v err=%q in %v\n",
				x.rec.Seq, x.rec.Proto, x.rec.Method, x.rec.Path, x.rec.Request.Model, resp.Status, resp.Stream,
				resp.Chunks, resp.Cut, resp.ErrorType, x.rec.Times.End.Sub(x.rec.Times.Start).Round(time.Microsecond))
		}
	}
}

// serveStats serves the finished exchanges, those after ?since=N only.
func (s *server) serveStats(w http.ResponseWriter, r *http.Request) {
	since := 0
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			http.Error(w, "since: want a sequence number", http.StatusBadRequest)
			return
		}
		since = n
	}
	s.mu.Lock()
	out := modelspec.Stats{Exchanges: []modelspec.Exchange{}}
	for _, x := range s.done {
		if x.Seq > since {
			out.Exchanges = append(out.Exchanges, x)
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// requestBody holds the request fields any of the APIs has.
type requestBody struct {
	Model         string `json:"model"`
	Stream        *bool  `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MaxOutputTokens     *int64          `json:"max_output_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	N                   *int            `json:"n"`
	Input               json.RawMessage `json:"input"`
	EncodingFormat      string          `json:"encoding_format"`
	Options             *struct {
		NumPredict  *int64   `json:"num_predict"`
		Temperature *float64 `json:"temperature"`
		TopP        *float64 `json:"top_p"`
	} `json:"options"`
}

// exchange is one request being answered.
type exchange struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctx     context.Context
	api     api
	opts    modelspec.Options
	header  string // the options header
	req     requestBody
	rec     modelspec.Exchange
	created int64 // unix seconds, for the APIs' "created" fields

	reqBody  []byte        // the request body as read
	respBody *bytes.Buffer // the response body as written, when dumping

	model    string // the model the response names
	stream   bool
	headSent bool
	text     strings.Builder // the first choice's content as sent
}

// readRequest reads and parses the body and resolves the options; on
// failure it answers 400 and returns false.
func (x *exchange) readRequest(r *http.Request) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	x.reqBody = body
	x.rec.Times.BodyRead = time.Now()
	x.rec.Request.Bytes = len(body)
	if err != nil {
		x.rec.Response.ErrorMessage = "reading the request: " + err.Error()
		return false
	}
	if len(body) > maxBody {
		x.writeError(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body over %d bytes", maxBody))
		return false
	}
	if err := json.Unmarshal(body, &x.req); err != nil {
		x.writeError(http.StatusBadRequest, "invalid_request_error", "the request body is not valid JSON: "+err.Error())
		return false
	}
	q := &x.rec.Request
	q.Valid = true
	q.Model = x.req.Model
	q.Stream = x.api.defaultStream()
	if x.req.Stream != nil {
		q.Stream = *x.req.Stream
	}
	if x.req.StreamOptions != nil {
		q.IncludeUsage = x.req.StreamOptions.IncludeUsage
	}
	q.Temperature, q.TopP = x.req.Temperature, x.req.TopP
	for _, m := range []*int64{x.req.MaxTokens, x.req.MaxCompletionTokens, x.req.MaxOutputTokens} {
		if m != nil && q.MaxTokens == nil {
			q.MaxTokens = m
		}
	}
	if o := x.req.Options; o != nil {
		if q.MaxTokens == nil {
			q.MaxTokens = o.NumPredict
		}
		if q.Temperature == nil {
			q.Temperature = o.Temperature
		}
		if q.TopP == nil {
			q.TopP = o.TopP
		}
	}
	q.Inputs = countInputs(x.req.Input)

	opts, err := modelspec.Resolve(x.opts, x.req.Model, x.header)
	if err != nil {
		x.writeError(http.StatusBadRequest, "invalid_request_error", err.Error())
		return false
	}
	x.opts = opts
	x.model, _ = modelspec.SplitModel(x.req.Model)
	if opts.RespModel != "" {
		x.model = opts.RespModel
	}
	x.stream = q.Stream && !x.api.embedding()
	return true
}

// countInputs counts an embedding request's inputs: one string, or the
// elements of an array.
func countInputs(raw json.RawMessage) int {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0
	}
	if raw[0] != '[' {
		return 1
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return 1
	}
	return len(elems)
}

// inputs is the number of embeddings to return (at least one).
func (x *exchange) inputs() int {
	return max(1, x.rec.Request.Inputs)
}

// choices is the number of choices: one per finish reason, else the
// request's n.
func (x *exchange) choices() int {
	if n := len(x.opts.Finish); n > 0 {
		return n
	}
	if x.req.N != nil && *x.req.N > 1 && *x.req.N <= 16 {
		return *x.req.N
	}
	return 1
}

// finish is choice c's finish reason, or the API's usual one.
func (x *exchange) finishReason(c int, usual string) string {
	if c < len(x.opts.Finish) {
		return x.opts.Finish[c]
	}
	return usual
}

// id is the response id: the option, or prefix and sequence number.
func (x *exchange) id(prefix string) string {
	if x.opts.ID != "" {
		return x.opts.ID
	}
	return prefix + strconv.Itoa(x.rec.Seq)
}

// chunkText is content chunk i.
func (x *exchange) chunkText(i int) string {
	return x.opts.Say + strconv.Itoa(i) + " "
}

// fullText is every chunk's content: a non-streamed answer.
func (x *exchange) fullText() string {
	var b strings.Builder
	for i := range x.opts.Chunks {
		b.WriteString(x.chunkText(i))
	}
	return b.String()
}

// usage is the token counts to report.
func (x *exchange) usage() modelspec.Usage {
	return modelspec.Usage{
		Input:      x.opts.Input,
		Output:     x.opts.OutputTokens(),
		Cached:     x.opts.Cached,
		CacheWrite: x.opts.CacheWrite,
		Reasoning:  x.opts.Reasoning,
	}
}

// event is one SSE event or NDJSON line, with what writing it tells the
// truth record.
type event struct {
	name string // SSE event name ("" for none)
	data any    // marshalled as JSON, or a raw string (raw)
	raw  bool

	content bool     // a content chunk (counted, timed, its text kept)
	text    string   // the first choice's content in it
	usage   bool     // carries the usage
	finish  []string // the finish reasons it carries
	errType string   // an error event: the error object's type
	errMsg  string
}

// respond answers a parsed request.
func (x *exchange) respond() {
	o := x.opts
	if o.Status >= 400 {
		x.sleepUntil(o.TTFT)
		typ := o.ErrType
		if typ == "" {
			typ = x.api.errorType(o.Status)
		}
		x.writeError(o.Status, typ, fmt.Sprintf("test error %d (#%d)", o.Status, x.rec.Seq))
		return
	}
	if !x.stream {
		delay := o.TTFT
		if !x.api.embedding() && o.Chunks > 1 {
			delay += time.Duration(o.Chunks-1) * o.Gap
		}
		if !x.sleepUntil(delay) {
			return
		}
		x.writeBody()
		return
	}
	x.writeStream()
}

// sleepUntil waits until d after the body was read; false when the client
// has gone meanwhile.
func (x *exchange) sleepUntil(d time.Duration) bool {
	wait := time.Until(x.rec.Times.BodyRead.Add(d))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.ctx.Done():
		x.rec.Response.ClientGone = true
		return false
	}
}

// writeBody writes a non-streamed answer.
func (x *exchange) writeBody() {
	resp := &x.rec.Response
	body, usage, finish := x.api.body(x)
	data, err := json.Marshal(body)
	if err != nil {
		panic(err) // the shapes are built here: a bug
	}
	if x.opts.Malformed {
		data = data[:len(data)/2]
		resp.Malformed = true
	}
	x.w.Header().Set("Content-Type", x.api.contentType(false))
	x.w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	x.writeHead(http.StatusOK)
	resp.ID, resp.Model = x.api.ids(x)
	resp.FinishReasons = finish
	if usage {
		u := x.api.sentUsage(x.usage())
		resp.Usage = &u
	}
	if !x.api.embedding() {
		resp.Chunks = x.opts.Chunks
		x.text.WriteString(x.fullText())
	}
	if x.opts.CutAt >= 0 {
		x.write(data[:len(data)/2])
		x.flush()
		x.cut()
	}
	x.write(data)
}

// writeStream writes a streamed answer on the schedule of the options.
func (x *exchange) writeStream() {
	o := x.opts
	x.w.Header().Set("Content-Type", x.api.contentType(true))
	x.w.Header().Set("Cache-Control", "no-cache")
	x.rec.Response.Stream = true
	resp := &x.rec.Response
	resp.ID, resp.Model = x.api.ids(x)
	if o.Head >= 0 {
		if !x.sleepUntil(o.Head) {
			return
		}
		x.openStream()
		if !x.flush() {
			return
		}
	}
	if x.endEarly(0) {
		return
	}
	for i := range o.Chunks {
		if !x.sleepUntil(o.TTFT + time.Duration(i)*o.Gap) {
			return
		}
		x.openStream()
		evs := x.api.chunk(x, i)
		if o.Malformed && i == 0 {
			evs = malform(evs)
			resp.Malformed = true
		}
		if !x.send(evs...) || !x.flush() {
			return
		}
		if x.endEarly(i + 1) {
			return
		}
	}
	x.openStream()
	if x.send(x.api.closing(x)...) {
		x.flush()
	}
}

// openStream sends the head and the API's opening events, once.
func (x *exchange) openStream() {
	if x.headSent {
		return
	}
	x.writeHead(http.StatusOK)
	x.send(x.api.opening(x)...)
}

// endEarly cuts the connection or sends the in-stream error when n content
// chunks have been written and the options say so; true when the stream
// ended.
func (x *exchange) endEarly(n int) bool {
	o := x.opts
	if n != o.CutAt && n != o.ErrAt {
		return false
	}
	if !x.headSent {
		if !x.sleepUntil(o.TTFT) {
			return true
		}
		x.openStream()
	}
	if n == o.CutAt {
		x.flush()
		x.cut()
	}
	typ := o.ErrType
	if typ == "" {
		typ = x.api.errorType(http.StatusInternalServerError)
	}
	if x.send(x.api.streamError(x, typ, fmt.Sprintf("test error in the stream after %d chunks (#%d)", n, x.rec.Seq))) {
		x.flush()
	}
	return true
}

// malform cuts the JSON of the first event with data inside its text.
func malform(evs []event) []event {
	out := append([]event(nil), evs...)
	for i, ev := range out {
		if ev.raw {
			continue
		}
		data, _ := json.Marshal(ev.data)
		out[i].data = string(data[:len(data)/2])
		out[i].raw = true
		break
	}
	return out
}

// cut ends the handler so that net/http closes the connection (HTTP/1.x)
// or resets the stream (HTTP/2) without completing the response.
func (x *exchange) cut() {
	x.rec.Response.Cut = true
	panic(http.ErrAbortHandler)
}

func (x *exchange) writeHead(status int) {
	if x.headSent {
		return
	}
	x.headSent = true
	x.rec.Response.Status = status
	x.rec.Response.ContentType = x.w.Header().Get("Content-Type")
	x.w.Header().Set("X-Request-Id", "req_zt"+strconv.Itoa(x.rec.Seq))
	x.w.WriteHeader(status)
}

// send writes events in the API's framing; false when the client has gone.
func (x *exchange) send(evs ...event) bool {
	var b bytes.Buffer
	resp := &x.rec.Response
	for _, ev := range evs {
		var data []byte
		if ev.raw {
			data = []byte(ev.data.(string))
		} else {
			var err error
			if data, err = json.Marshal(ev.data); err != nil {
				panic(err)
			}
		}
		if x.api.ndjson() {
			b.Write(data)
			b.WriteByte('\n')
		} else {
			if ev.name != "" {
				b.WriteString("event: " + ev.name + "\n")
			}
			b.WriteString("data: ")
			b.Write(data)
			b.WriteString("\n\n")
		}
		resp.Events++
		if resp.Events == 1 {
			x.rec.Times.FirstChunk = time.Now()
		}
		if ev.content {
			resp.Chunks++
			x.text.WriteString(ev.text)
		}
		if ev.usage {
			u := x.api.sentUsage(x.usage())
			resp.Usage = &u
		}
		if ev.finish != nil {
			resp.FinishReasons = ev.finish
		}
		if ev.errType != "" || ev.errMsg != "" {
			resp.ErrorType, resp.ErrorMessage = ev.errType, ev.errMsg
		}
	}
	if !x.write(b.Bytes()) {
		return false
	}
	now := time.Now()
	for _, ev := range evs {
		if ev.content {
			if x.rec.Times.FirstToken.IsZero() {
				x.rec.Times.FirstToken = now
			}
			x.rec.Times.Chunks = append(x.rec.Times.Chunks, now.Sub(x.rec.Times.BodyRead))
		}
	}
	return true
}

func (x *exchange) write(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	x.rec.Times.End = time.Now()
	n, err := x.w.Write(p)
	x.rec.Response.Bytes += n
	if x.respBody != nil {
		x.respBody.Write(p[:n])
	}
	if err != nil {
		x.rec.Response.ClientGone = true
		return false
	}
	return true
}

// flush pushes what was written to the client, recording when the head went.
func (x *exchange) flush() bool {
	x.rec.Times.End = time.Now()
	if err := x.rc.Flush(); err != nil {
		x.rec.Response.ClientGone = true
		return false
	}
	if x.rec.Times.Head.IsZero() {
		x.rec.Times.Head = time.Now()
	}
	return true
}

// writeError answers with the API's error object.
func (x *exchange) writeError(status int, typ, msg string) {
	data, err := json.Marshal(x.api.errorBody(x, status, typ, msg))
	if err != nil {
		panic(err)
	}
	x.rec.Response.ErrorType, x.rec.Response.ErrorMessage = x.api.recordedErrorType(typ), msg
	x.w.Header().Set("Content-Type", "application/json")
	x.w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	x.writeHead(status)
	x.write(data)
}
