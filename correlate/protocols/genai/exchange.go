package genai

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai/jscan"
)

// Options says what an Exchange reads and keeps.
type Options struct {
	// Provider is gen_ai.provider.name when the configuration names the
	// host's provider; "" for the API's default (Provider).
	Provider string
	// Content: keep the prompts and answers (gen_ai.capture_content),
	// each text cut at MaxContent bytes (0: DefaultMaxContent), at most
	// MaxMessages messages a side.
	Content    bool
	MaxContent int
	// Strings interns repeated values; nil allocates each.
	Strings *Strings
}

// Bounds of what content capture keeps.
const (
	DefaultMaxContent = 4096
	MaxMessages       = 32
)

// respMode is how a response body is read.
type respMode uint8

const (
	modeUnknown respMode = iota // no body byte yet
	modeJSON                    // one JSON document
	modeStream                  // SSE or NDJSON lines
	modeSkip                    // not readable (compressed, not JSON): ignored
)

// Exchange reads one call to a model API from its request and response
// bodies, fed as they were captured: the first bytes of each body in
// order (RequestBody, ResponseBody, in pieces of any size), and, when the
// capture lost a body's middle, its last bytes (RequestTail,
// ResponseTail). Finish then writes what it read into a model.GenAI.
//
// An Exchange holds a few kilobytes whatever the bodies, and can be
// reused with Reset. The zero Exchange must be Reset before use.
type Exchange struct {
	api  model.GenAIAPI
	opts Options
	g    model.GenAI

	// The request.
	req           jscan.Scanner
	reqSeen       bool // body bytes were fed
	reqBad        bool // they were not a JSON object
	streamSet     bool // the request said whether to stream
	maxCompletion bool // max_completion_tokens was seen, which wins

	// The response.
	status     int
	mode       respMode
	ndjson     bool
	resp       jscan.Scanner
	eventPaths *jscan.Paths
	lines      lines
	ev         event
	last       time.Time // when the last response bytes came
	tailMode   bool      // reading what follows a gap
	terminal   bool      // the API said the response is complete
	goodEvents int
	badEvents  int
	respStatus string // the Responses API's status
	incomplete string // and its incomplete_details.reason
	uncached   int64  // Anthropic's input_tokens, cached tokens not included
	errType    string
	errCode    string
	errMsg     string
	errSeen    bool

	side side // which document the scanner being fed reads

	// Content capture: the input message being filled and its text, the
	// system instructions and the answer's text.
	msg     *model.GenAIMessage
	msgText []byte
	sysText []byte
	outText []byte
	outRole string
}

// NewExchange returns an Exchange reading a call to api.
func NewExchange(api model.GenAIAPI, opts Options) *Exchange {
	x := &Exchange{}
	x.Reset(api, opts)
	return x
}

// Reset readies x for a new call to api. What a previous Finish handed
// over (the content's messages) is not reused.
func (x *Exchange) Reset(api model.GenAIAPI, opts Options) {
	if opts.MaxContent <= 0 {
		opts.MaxContent = DefaultMaxContent
	}
	*x = Exchange{api: api, opts: opts, uncached: -1,
		msgText: x.msgText[:0], sysText: x.sysText[:0], outText: x.outText[:0]}
	x.g.Reset()
	x.g.API = api
	x.side = sideRequest
	x.req.Reset(pathsFor(api, sideRequest, opts.Content), (*fields)(x))
}

// Done says whether the response is complete by the API's word.
func (x *Exchange) Done() bool { return x.terminal }

// Streaming says whether the response body is read as a stream (SSE or
// NDJSON), whose events can be picked up again after a gap
// (ResponseTail), as opposed to one JSON document.
func (x *Exchange) Streaming() bool { return x.mode == modeStream }

// API is the API x reads.
func (x *Exchange) API() model.GenAIAPI { return x.api }

// RequestBody reads the next bytes of the request body.
func (x *Exchange) RequestBody(p []byte) {
	if len(p) == 0 || x.reqBad {
		return
	}
	if !x.reqSeen {
		i := 0
		for i < len(p) && isSpace(p[i]) {
			i++
		}
		if i == len(p) {
			return
		}
		x.reqSeen = true
		if p[i] != '{' {
			x.reqBad = true
			return
		}
	}
	x.side = sideRequest
	x.req.Feed(p)
	if x.req.Broken() {
		x.reqBad = true
	}
}

// RequestTail reads the last bytes of a request body whose middle was
// not captured: the members after the gap (the Go SDKs write the model
// and the stream flag after the messages).
func (x *Exchange) RequestTail(p []byte) {
	x.g.Cut |= model.GenAICutRequest
	if x.reqBad {
		return
	}
	x.side = sideRequest
	x.closeMessage()
	jscan.Tail(&x.req, p, pathsFor(x.api, sideRequest, x.opts.Content), (*fields)(x))
}

// MarkCut records that the capture did not see part of a body (c says
// which), when it gave no tail of it.
func (x *Exchange) MarkCut(c model.GenAICut) { x.g.Cut |= c }

// ResponseHead reads the response's head: its status and the values of
// its Content-Type and Content-Encoding headers ("" when absent).
func (x *Exchange) ResponseHead(status int, contentType, contentEncoding string) {
	x.status = status
	if contentEncoding != "" && !strings.EqualFold(contentEncoding, "identity") {
		x.g.Cut |= model.GenAIEncoded
		x.mode = modeSkip
		return
	}
	ct := strings.ToLower(contentType)
	switch {
	case strings.Contains(ct, "event-stream"):
		x.startStream(false)
	case strings.Contains(ct, "ndjson"):
		x.startStream(true)
	case strings.Contains(ct, "json"), status >= 400:
		x.startJSON()
	}
}

// ollamaStream says whether the response is an Ollama stream by the
// request: Ollama streams unless told not to.
func (x *Exchange) ollamaStream() bool {
	switch x.api {
	case model.GenAIOllamaChat, model.GenAIOllamaGenerate:
		return !x.streamSet || x.g.Stream
	}
	return false
}

func (x *Exchange) startJSON() {
	x.mode = modeJSON
	x.resp.Reset(pathsFor(x.api, sideResponse, x.opts.Content), (*fields)(x))
}

func (x *Exchange) startStream(ndjson bool) {
	x.mode, x.ndjson = modeStream, ndjson
	x.eventPaths = pathsFor(x.api, sideEvent, x.opts.Content)
	x.nextEvent()
}

// ResponseBody reads the next bytes of the response body, which arrived
// (or left, on a server) at t. It says whether the response is complete by
// the API's word: a whole document, or a stream's terminal event.
func (x *Exchange) ResponseBody(t time.Time, p []byte) bool {
	x.last = t
	if x.mode == modeUnknown && !x.sniff(p) {
		return x.terminal
	}
	switch x.mode {
	case modeJSON:
		if x.terminal {
			break
		}
		x.side = sideResponse
		x.resp.Feed(p)
		// What follows the document is not read (the split of the
		// pieces must not matter: a later piece is not fed at all).
		x.terminal = x.resp.Docs() > 0
	case modeStream:
		x.feedLines(t, p)
	}
	return x.terminal
}

// sniff chooses how to read a body whose head did not say, from its first
// byte; false when p holds none.
func (x *Exchange) sniff(p []byte) bool {
	i := 0
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	if i == len(p) {
		return false
	}
	switch c := p[i]; {
	case c == '{' && x.ollamaStream():
		x.startStream(true)
	case c == '{':
		x.startJSON()
	case c == 'd' || c == 'e' || c == ':' || c == 'i':
		x.startStream(false)
	default:
		x.mode = modeSkip
	}
	return true
}

// ResponseTail reads the last bytes of a response body whose middle was
// not captured: the members after the gap (usage follows the answer), or
// a stream's last events.
func (x *Exchange) ResponseTail(p []byte) {
	x.g.Cut |= model.GenAICutResponse
	if x.terminal {
		return
	}
	switch x.mode {
	case modeJSON:
		x.side = sideResponse
		x.closeMessage()
		if jscan.Tail(&x.resp, p, pathsFor(x.api, sideResponse, x.opts.Content), (*fields)(x)) {
			x.terminal = true
		}
	case modeStream:
		// Resynchronise at the first line (NDJSON) or event (SSE) that
		// starts inside p.
		sep := []byte("\n\n")
		if x.ndjson {
			sep = sep[:1]
		}
		i := bytes.Index(p, sep)
		if i < 0 {
			return
		}
		x.tailMode = true
		x.lines = lines{}
		x.nextEvent()
		x.feedLines(time.Time{}, p[i+len(sep):])
	}
}

// Finish writes what x read into g, the response having ended as end
// says (the capture's view: framing, close, or unknown; the API's own
// terminal event overrides it). It says whether the call was one: false
// when a body was not what the API sends (not JSON), and then g is left
// alone. x is not read again until Reset.
func (x *Exchange) Finish(g *model.GenAI, end model.GenAIEnd) bool {
	x.endOfBody()
	if x.reqBad || x.mode == modeSkip && x.g.Cut&model.GenAIEncoded == 0 ||
		x.mode == modeJSON && x.resp.Broken() && x.resp.Docs() == 0 ||
		x.mode == modeStream && x.goodEvents == 0 && x.badEvents > 0 {
		return false
	}
	x.closeMessage()
	x.closeOutput()
	r := &x.g
	r.Operation = Operation(x.api)
	r.Provider = x.opts.Provider
	if r.Provider == "" {
		r.Provider = Provider(x.api)
	}
	if !x.streamSet {
		// Not said by the request: a streamed response says it, else
		// the API's default (Ollama streams).
		r.Stream = x.mode == modeStream || (x.mode != modeJSON || x.status >= 400) && x.ollamaStream()
	}

	u := &r.Usage
	if x.uncached >= 0 {
		u.Input = x.uncached + max(u.CacheRead, 0) + max(u.CacheCreation, 0)
	}
	if x.isOllama() && x.terminal && u.Input < 0 && x.status < 400 {
		// prompt_eval_count is left out when it is 0 (a cached prompt).
		u.Input = 0
	}
	if r.Stream && u.Output < 0 && r.ContentChunks > 0 {
		u.Output, u.Estimated = int64(r.ContentChunks), true
	}

	if x.api == model.GenAIResponses {
		switch x.respStatus {
		case "completed":
			r.AddFinishReason("stop")
		case "incomplete":
			switch x.incomplete {
			case "max_output_tokens":
				r.AddFinishReason("length")
			case "":
				r.AddFinishReason("incomplete")
			default:
				r.AddFinishReason(x.incomplete)
			}
		case "failed":
			x.errSeen = true
		}
	}

	switch {
	case x.errType != "":
		r.ErrorType = x.errType
	case x.errCode != "":
		r.ErrorType = x.errCode
	case x.status >= 400:
		r.ErrorType = strconv.Itoa(x.status)
	case x.errSeen:
		r.ErrorType = "_OTHER"
	case r.Stream && !x.terminal && x.mode == modeStream && end != model.GenAIEndUnknown &&
		r.Cut&model.GenAICutResponse == 0:
		// The stream stopped with no terminal event and nothing lost
		// by the capture: it was cut.
		r.ErrorType = "stream_cut"
	}
	r.ErrorMessage = x.errMsg

	r.End = end
	if x.terminal {
		r.End = model.GenAIEndDone
	}
	if len(r.Output) > 0 && r.NFinish > 0 {
		r.Output[len(r.Output)-1].FinishReason = r.FinishReasons[0]
	}
	*g = *r
	x.g.Input, x.g.Output = nil, nil
	return true
}

// endOfBody settles a stream whose body ended inside a line (an NDJSON
// document with no newline after it) or an event (no blank line after it).
func (x *Exchange) endOfBody() {
	if x.mode != modeStream || x.terminal {
		return
	}
	if x.lines.phase != lineStart {
		x.endLine(x.last, '\n')
	}
	if !x.ndjson && x.ev.started {
		x.dispatch(x.last)
	}
}

func (x *Exchange) isOllama() bool {
	return x.api == model.GenAIOllamaChat || x.api == model.GenAIOllamaGenerate || x.api == model.GenAIOllamaEmbed
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// fields is the Exchange seen as the scanners' handler.
type fields Exchange

// Field takes one watched value.
func (f *fields) Field(ev *jscan.Event) {
	x := (*Exchange)(f)
	if x.side == sideRequest && bytes.IndexByte(ev.Path, '?') >= 0 {
		// A request's tail: only whole top-level members count (a "?"
		// key might be any).
		return
	}
	g := &x.g
	str := ev.Kind == jscan.String
	switch field(ev.ID) {
	case fModel:
		if str {
			g.RequestModel = x.intern(ev.Value)
		}
	case fStream:
		if ev.Kind == jscan.Bool {
			g.Stream, x.streamSet = string(ev.Value) == "true", true
		}
	case fMaxTokens:
		if n, ok := integer(ev); ok && !x.maxCompletion {
			g.MaxTokens = n
		}
	case fMaxCompletionTokens:
		if n, ok := integer(ev); ok {
			g.MaxTokens, x.maxCompletion = n, true
		}
	case fTemperature:
		x.float(ev, &g.Temperature, model.GenAITemperature)
	case fTopP:
		x.float(ev, &g.TopP, model.GenAITopP)
	case fTopK:
		x.float(ev, &g.TopK, model.GenAITopK)
	case fFrequencyPenalty:
		x.float(ev, &g.FrequencyPenalty, model.GenAIFrequencyPenalty)
	case fPresencePenalty:
		x.float(ev, &g.PresencePenalty, model.GenAIPresencePenalty)
	case fSeed:
		if n, ok := integer(ev); ok {
			g.Seed = n
		}
	case fChoiceCount:
		if n, ok := integer(ev); ok {
			g.ChoiceCount = n
		}
	case fDimensions:
		if n, ok := integer(ev); ok {
			g.Dimensions = n
		}
	case fStop, fStopElem:
		if str {
			g.AddStop(string(ev.Value))
		}
	case fRequestServiceTier:
		if str {
			g.RequestServiceTier = x.intern(ev.Value)
		}
	case fFormatType:
		if str {
			switch string(ev.Value) {
			case "json_object", "json_schema":
				g.OutputType = "json"
			case "text":
				g.OutputType = "text"
			}
		}
	case fOllamaFormat:
		if str && string(ev.Value) == "json" || ev.Kind == jscan.Object && !ev.End {
			g.OutputType = "json"
		}
	case fEncodingFormat:
		if str {
			g.EncodingFormat = x.intern(ev.Value)
		}

	case fResponseID:
		if str && string(ev.Value) != g.ResponseID {
			g.ResponseID = string(ev.Value)
		}
	case fResponseModel:
		if str && string(ev.Value) != g.ResponseModel {
			g.ResponseModel = x.intern(ev.Value)
		}
	case fFinishReason:
		if str {
			g.AddFinishReason(x.intern(ev.Value))
		}
	case fResponseStatus:
		if str {
			x.respStatus = x.intern(ev.Value)
		}
	case fIncompleteReason:
		if str {
			x.incomplete = x.intern(ev.Value)
		}
	case fServiceTier:
		if str {
			g.ServiceTier = x.intern(ev.Value)
		}
	case fSystemFingerprint:
		if str && string(ev.Value) != g.SystemFingerprint {
			g.SystemFingerprint = x.intern(ev.Value)
		}
	case fInputTokens:
		setCount(ev, &g.Usage.Input)
	case fInputUncached:
		setCount(ev, &x.uncached)
	case fOutputTokens:
		setCount(ev, &g.Usage.Output)
	case fCacheRead:
		setCount(ev, &g.Usage.CacheRead)
	case fCacheCreation:
		setCount(ev, &g.Usage.CacheCreation)
	case fReasoning:
		setCount(ev, &g.Usage.Reasoning)
	case fDone:
		if ev.Kind == jscan.Bool && string(ev.Value) == "true" {
			x.ev.done = true
		}
	case fEventType:
		if str {
			x.ev.setType(ev.Value)
		}
	case fContent:
		if str && len(ev.Value) > 0 || ev.Kind == jscan.Array && !ev.End {
			x.ev.content = true
		}

	case fErrorType:
		if str {
			x.errType, x.errSeen = x.intern(ev.Value), true
			x.ev.errored = true
		}
	case fErrorCode:
		if str || ev.Kind == jscan.Number {
			x.errCode, x.errSeen = x.intern(ev.Value), true
			x.ev.errored = true
		}
	case fErrorMessage:
		if str {
			x.errMsg, x.errSeen = string(ev.Value), true
			x.ev.errored = true
		}
	case fErrorText:
		if str {
			x.errMsg, x.errSeen = string(ev.Value), true
			x.ev.errored = true
		}

	case fOutText:
		if x.side == sideEvent && (ev.Kind == jscan.Text && len(ev.Value) > 0 || ev.Kind == jscan.String && len(ev.Value) > 0) {
			x.ev.content = true
		}
		x.content(fOutText, ev)
	case fInMsg, fInRole, fInText, fSystem, fOutRole:
		x.content(field(ev.ID), ev)
	}
}

// intern is b as a string, from the interning table.
func (x *Exchange) intern(b []byte) string { return x.opts.Strings.Get(b) }

func (x *Exchange) float(ev *jscan.Event, dst *float64, bit model.GenAIParams) {
	if ev.Kind != jscan.Number {
		return
	}
	f, err := strconv.ParseFloat(string(ev.Value), 64)
	if err != nil {
		return
	}
	*dst = f
	x.g.Params |= bit
}

// integer reads a count: a non-negative integer (a number written with a
// fraction of zero, "12.0", too); negative seeds are integers too.
func integer(ev *jscan.Event) (int64, bool) {
	if ev.Kind != jscan.Number || ev.Cut {
		return 0, false
	}
	b := ev.Value
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var n int64
	i := 0
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		if n > (1<<62)/10 {
			return 0, false
		}
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 {
		return 0, false
	}
	if i < len(b) {
		// Only a zero fraction is an integer.
		if b[i] != '.' {
			return 0, false
		}
		for _, c := range b[i+1:] {
			if c != '0' {
				return 0, false
			}
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// setCount sets a token count, which is never negative.
func setCount(ev *jscan.Event, dst *int64) {
	if n, ok := integer(ev); ok && n >= 0 {
		*dst = n
	}
}
