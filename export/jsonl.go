package export

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// JSONSpan is the shape of one line of JSON output.
type JSONSpan struct {
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentSpanID  string         `json:"parent_span_id"`
	TraceState    string         `json:"trace_state,omitempty"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`
	StartUnixNano int64          `json:"start_unix_nano"`
	EndUnixNano   int64          `json:"end_unix_nano"`
	StatusCode    string         `json:"status_code"`
	StatusMessage string         `json:"status_message,omitempty"`
	Resource      map[string]any `json:"resource"`
	Attributes    map[string]any `json:"attributes"`
}

// JSONLines writes one JSON object per span and line. The encoding is done
// by hand into a reused buffer: at tens of thousands of spans per second,
// reflection-based encoding would cost the host more CPU than the probes.
type JSONLines struct {
	w   *bufio.Writer
	buf []byte
	// resources holds each live process's resource, encoded once.
	resources processCache[[]byte]
}

// NewJSONLines writes to w.
func NewJSONLines(w io.Writer) *JSONLines {
	return &JSONLines{w: bufio.NewWriterSize(w, 64<<10)}
}

// Name implements Sink.
func (*JSONLines) Name() string { return "json" }

// Export implements Sink.
func (j *JSONLines) Export(_ context.Context, spans []*model.Span) error {
	for _, s := range spans {
		j.buf = j.appendSpan(j.buf[:0], s)
		if _, err := j.w.Write(j.buf); err != nil {
			return err
		}
	}
	j.resources.sweep(len(spans), nil)
	return j.w.Flush()
}

// Shutdown implements Sink.
func (j *JSONLines) Shutdown(context.Context) error { return j.w.Flush() }

func (j *JSONLines) appendSpan(b []byte, s *model.Span) []byte {
	b = append(b, `{"trace_id":"`...)
	b = hex.AppendEncode(b, s.TraceID[:])
	b = append(b, `","span_id":"`...)
	b = hex.AppendEncode(b, s.SpanID[:])
	b = append(b, `","parent_span_id":"`...)
	if s.ParentSpanID.IsValid() {
		b = hex.AppendEncode(b, s.ParentSpanID[:])
	}
	b = append(b, '"')
	if s.TraceState != "" {
		b = append(b, `,"trace_state":`...)
		b = appendString(b, s.TraceState)
	}
	b = append(b, `,"name":`...)
	b = appendString(b, s.Name)
	b = append(b, `,"kind":"`...)
	b = append(b, KindName(s.Kind)...)
	b = append(b, `","start_unix_nano":`...)
	b = strconv.AppendInt(b, s.Start.UnixNano(), 10)
	b = append(b, `,"end_unix_nano":`...)
	b = strconv.AppendInt(b, s.End.UnixNano(), 10)
	b = append(b, `,"status_code":"`...)
	b = append(b, StatusName(s.Status)...)
	b = append(b, '"')
	if s.StatusMsg != "" {
		b = append(b, `,"status_message":`...)
		b = appendString(b, s.StatusMsg)
	}
	b = append(b, `,"resource":`...)
	if s.Process != nil {
		res, ok := j.resources.get(s.Process)
		if !ok {
			res = appendAttrs(nil, s.Process.Resource())
			j.resources.put(s.Process, res)
		}
		b = append(b, res...)
	} else {
		b = append(b, "{}"...)
	}
	b = append(b, `,"attributes":`...)
	b = appendAttrs(b, s.Attributes)
	return append(b, "}\n"...)
}

func appendAttrs(b []byte, kvs []attribute.KeyValue) []byte {
	b = append(b, '{')
	for i, kv := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, string(kv.Key))
		b = append(b, ':')
		b = appendValue(b, kv.Value)
	}
	return append(b, '}')
}

func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.STRING:
		return appendString(b, v.AsString())
	case attribute.INT64:
		return strconv.AppendInt(b, v.AsInt64(), 10)
	case attribute.BOOL:
		return strconv.AppendBool(b, v.AsBool())
	case attribute.FLOAT64:
		f := v.AsFloat64()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return appendString(b, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	}
	// Slices are rare: let encoding/json do them.
	enc, err := json.Marshal(v.AsInterface())
	if err != nil {
		return appendString(b, v.Emit())
	}
	return append(b, enc...)
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so every line stays valid JSON whatever a traced
// process sent.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		// Copy the run of bytes that need no escaping in one go: span
		// strings are mostly plain ASCII.
		j := i
		for j < len(s) && s[j] >= 0x20 && s[j] < utf8.RuneSelf && s[j] != '"' && s[j] != '\\' {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// ToJSON converts a span to its JSON form.
func ToJSON(s *model.Span) JSONSpan {
	out := JSONSpan{
		TraceID:       s.TraceID.String(),
		SpanID:        s.SpanID.String(),
		Name:          s.Name,
		Kind:          KindName(s.Kind),
		StartUnixNano: s.Start.UnixNano(),
		EndUnixNano:   s.End.UnixNano(),
		StatusCode:    StatusName(s.Status),
		StatusMessage: s.StatusMsg,
		Attributes:    attrMap(s.Attributes),
	}
	if s.ParentSpanID.IsValid() {
		out.ParentSpanID = s.ParentSpanID.String()
	}
	out.TraceState = s.TraceState
	if s.Process != nil {
		out.Resource = attrMap(s.Process.Resource())
	}
	return out
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// KindName is the lowercase name of a span kind ("server", "client", …).
func KindName(k trace.SpanKind) string {
	switch k {
	case trace.SpanKindServer:
		return "server"
	case trace.SpanKindClient:
		return "client"
	case trace.SpanKindProducer:
		return "producer"
	case trace.SpanKindConsumer:
		return "consumer"
	case trace.SpanKindInternal:
		return "internal"
	}
	return "unspecified"
}

// StatusName is the lowercase name of a status code ("unset", "ok", "error").
func StatusName(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "ok"
	case codes.Error:
		return "error"
	case codes.Unset:
		return "unset"
	}
	return "code" + strconv.Itoa(int(c))
}
