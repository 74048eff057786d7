// Package modelspec is the contract between zerotrace's GenAI tests, the test
// model servers (tests/modelserver in Go; tests/testdata/pygenai/server.py,
// a subset in Python) and the client drivers (tests/genaiapp in Go,
// tests/testdata/pygenai/client.py, tests/testdata/nodegenai/client.mjs):
// Options, what a test asks a server to do; Exchange, what the server says it
// received and sent, with timings; Batch, what a test asks a driver to do;
// and Call, what a driver says it sent, received and measured — so that a
// test can compare the agent's spans with the truth on both sides.
//
// Options travel as text, "key=value,key=value", so that clients that cannot
// be changed (an official SDK, a Node or Python program) can carry them: as a
// suffix of the model name after '@' ("gpt-test@ttft=80,gap=10"), or in the
// OptionsHeader request header. A server applies its own defaults (its
// -defaults flag), then the model suffix, then the header. The model name the
// server echoes is the part before '@'.
package modelspec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// OptionsHeader is the request header that carries options, for clients that
// can set a header and want the model name left alone.
const OptionsHeader = "X-Modelserver-Options"

// Usage modes: whether a response reports token usage.
const (
	// UsageAuto reports usage where the API does by default: always, except
	// in an OpenAI chat or completions stream, which carries a final usage
	// chunk only when the request asked for it (stream_options.include_usage).
	UsageAuto = "auto"
	// UsageAlways adds the usage even to a stream that did not ask for it.
	UsageAlways = "always"
	// UsageNever leaves every usage field out, even when asked for.
	UsageNever = "never"
)

// Options says how a test model server answers one request. Durations count
// from the moment the request body has been read, on an absolute schedule
// (no drift): content chunk i is written at TTFT + i*Gap.
type Options struct {
	// TTFT is when the first content chunk of a stream is written. A
	// non-streamed answer is written whole at TTFT + (Chunks-1)*Gap, the time
	// the stream would have ended; an embedding or an error response at TTFT.
	TTFT time.Duration
	// Head, when not negative, is when the response head is sent, with the
	// events an API sends before any content (OpenAI chat's role-only chunk,
	// Anthropic's message_start, the Responses API's response.created): then
	// time to first chunk and time to first token differ. Negative (the
	// default): all of that goes out with the first content chunk.
	Head time.Duration
	// Gap separates content chunks.
	Gap time.Duration
	// Chunks is the number of content chunks (deltas) per choice.
	Chunks int
	// Token counts reported in the usage, in the API's own fields and
	// meanings (Anthropic's input_tokens excludes the cached counts, OpenAI's
	// prompt_tokens includes them). Output < 0 means "one token per chunk":
	// Chunks.
	Input, Output, Cached, CacheWrite, Reasoning int
	// Finish gives one finish reason per choice (OpenAI chat and completions:
	// the number of choices), as the API spells it: "stop", "length" for
	// OpenAI; "end_turn", "max_tokens" for Anthropic; for the Responses API
	// "completed" or the reason of an incomplete response
	// ("max_output_tokens", "content_filter"); Ollama's done_reason. Empty:
	// the API's usual reason, one choice (or the request's n).
	Finish []string
	// ID is the response id; empty: one made from the API's prefix and the
	// exchange's sequence number ("chatcmpl-zt-7", "msg_zt7", "resp_zt7").
	ID string
	// RespModel is the response's model; empty: the requested model (its
	// part before '@').
	RespModel string
	// Usage is UsageAuto, UsageAlways or UsageNever.
	Usage string
	// Status, when 400 or more, makes the answer an error with the API's
	// error object (ErrType, or the API's usual type for the status).
	Status  int
	ErrType string
	// ErrAt, when not negative, ends a stream after that many content chunks
	// with the API's in-stream error (an SSE error event, an Ollama error
	// line), then ends the response normally.
	ErrAt int
	// CutAt, when not negative, closes the connection after that many
	// content chunks (HTTP/2: resets the stream) without ending the response.
	// A non-streamed answer is cut after half of its body.
	CutAt int
	// Malformed makes the body invalid JSON: a non-streamed body is its first
	// half (with a matching Content-Length), a stream's first content event
	// is cut inside its JSON.
	Malformed bool
	// Say is the text of every content chunk, followed by the chunk's index
	// and a space: "tok0 tok1 tok2 ".
	Say string
	// Dim is the dimension of an embedding.
	Dim int
}

// Defaults are the options a server starts from unless told otherwise: five
// chunks written at once, twelve input tokens, one output token per chunk.
func Defaults() Options {
	return Options{
		Head:   -1,
		Chunks: 5,
		Input:  12,
		Output: -1,
		Usage:  UsageAuto,
		ErrAt:  -1,
		CutAt:  -1,
		Say:    "tok",
		Dim:    8,
	}
}

// OutputTokens is the output token count the server reports.
func (o Options) OutputTokens() int {
	if o.Output < 0 {
		return o.Chunks
	}
	return o.Output
}

// Apply parses "key=value,key=value" onto o and returns the result; keys not
// mentioned keep o's values. Keys (durations in milliseconds, fractions
// allowed):
//
//	ttft head gap             durations (head=-1: with the first chunk)
//	chunks                    content chunks per choice
//	in out cached cachewrite reasoning
//	                          token counts (out=-1: one per chunk)
//	finish=a|b                finish reasons, one per choice
//	id rmodel say             response id, response model, chunk text
//	usage=auto|always|never   whether usage is reported
//	status errtype            an error response (status >= 400)
//	errat cut                 in-stream error / connection cut after N chunks (-1: never)
//	malformed[=0|1]           invalid JSON
//	dim                       embedding dimension
//
// Values cannot contain ',' (nor '@' inside a model name).
func (o Options) Apply(spec string) (Options, error) {
	for field := range strings.SplitSeq(spec, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		key, val, hasVal := strings.Cut(field, "=")
		if err := o.set(key, val, hasVal); err != nil {
			return o, fmt.Errorf("model server option %q: %w", field, err)
		}
	}
	return o, nil
}

func (o *Options) set(key, val string, hasVal bool) error {
	if !hasVal && key != "malformed" {
		return fmt.Errorf("needs a value")
	}
	var err error
	switch key {
	case "ttft":
		o.TTFT, err = millis(val, false)
	case "head":
		o.Head, err = millis(val, true)
	case "gap":
		o.Gap, err = millis(val, false)
	case "chunks":
		o.Chunks, err = count(val, false)
	case "in":
		o.Input, err = count(val, false)
	case "out":
		o.Output, err = count(val, true)
	case "cached":
		o.Cached, err = count(val, false)
	case "cachewrite":
		o.CacheWrite, err = count(val, false)
	case "reasoning":
		o.Reasoning, err = count(val, false)
	case "finish":
		o.Finish = nil
		if val != "" {
			o.Finish = strings.Split(val, "|")
		}
	case "id":
		o.ID = val
	case "rmodel":
		o.RespModel = val
	case "say":
		o.Say = val
	case "usage":
		switch val {
		case UsageAuto, UsageAlways, UsageNever:
			o.Usage = val
		default:
			return fmt.Errorf("want auto, always or never")
		}
	case "status":
		o.Status, err = count(val, false)
		if err == nil && o.Status != 0 && (o.Status < 400 || o.Status > 599) {
			return fmt.Errorf("an error status is 400 to 599 (0: no error)")
		}
	case "errtype":
		o.ErrType = val
	case "errat":
		o.ErrAt, err = count(val, true)
	case "cut":
		o.CutAt, err = count(val, true)
	case "malformed":
		o.Malformed = !hasVal || val == "1" || val == "true"
		if hasVal && !o.Malformed && val != "0" && val != "false" {
			return fmt.Errorf("want 0 or 1")
		}
	case "dim":
		o.Dim, err = count(val, false)
		if err == nil && o.Dim == 0 {
			return fmt.Errorf("an embedding needs at least one dimension")
		}
	default:
		return fmt.Errorf("unknown key %q", key)
	}
	return err
}

// millis parses milliseconds; minusOne allows -1 (meaning "not set").
func millis(s string, minusOne bool) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want milliseconds")
	}
	if f == -1 && minusOne {
		return -1, nil
	}
	if f < 0 || f > 10*60*1000 {
		return 0, fmt.Errorf("want 0 to 600000 ms")
	}
	return time.Duration(f * float64(time.Millisecond)), nil
}

// count parses a non-negative integer (or -1 when minusOne).
func count(s string, minusOne bool) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 || (n == -1 && !minusOne) || n > 1<<24 {
		return 0, fmt.Errorf("want a count")
	}
	return n, nil
}

// String renders every option, in Apply's syntax: Defaults().Apply(o.String())
// gives o back.
func (o Options) String() string {
	ms := func(d time.Duration) string {
		if d < 0 {
			return "-1"
		}
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64)
	}
	parts := []string{
		"ttft=" + ms(o.TTFT), "head=" + ms(o.Head), "gap=" + ms(o.Gap),
		"chunks=" + strconv.Itoa(o.Chunks),
		"in=" + strconv.Itoa(o.Input), "out=" + strconv.Itoa(o.Output),
		"cached=" + strconv.Itoa(o.Cached), "cachewrite=" + strconv.Itoa(o.CacheWrite),
		"reasoning=" + strconv.Itoa(o.Reasoning),
		"finish=" + strings.Join(o.Finish, "|"),
		"id=" + o.ID, "rmodel=" + o.RespModel, "say=" + o.Say,
		"usage=" + o.Usage, "status=" + strconv.Itoa(o.Status), "errtype=" + o.ErrType,
		"errat=" + strconv.Itoa(o.ErrAt), "cut=" + strconv.Itoa(o.CutAt),
		"dim=" + strconv.Itoa(o.Dim),
	}
	if o.Malformed {
		parts = append(parts, "malformed=1")
	} else {
		parts = append(parts, "malformed=0")
	}
	return strings.Join(parts, ",")
}

// SplitModel splits a requested model name into the model the server echoes
// and the options after '@' ("" when there are none).
func SplitModel(model string) (name, options string) {
	name, options, _ = strings.Cut(model, "@")
	return name, options
}

// Resolve gives the options for one request: defaults, then the options in
// the model name, then those of the header.
func Resolve(defaults Options, model, header string) (Options, error) {
	_, inModel := SplitModel(model)
	o, err := defaults.Apply(inModel)
	if err != nil {
		return o, err
	}
	return o.Apply(header)
}
