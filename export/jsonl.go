package export

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
)

// JSONSpan is the shape of one line of JSON output.
type JSONSpan struct {
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentSpanID  string         `json:"parent_span_id"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`
	StartUnixNano int64          `json:"start_unix_nano"`
	EndUnixNano   int64          `json:"end_unix_nano"`
	StatusCode    string         `json:"status_code"`
	StatusMessage string         `json:"status_message,omitempty"`
	Resource      map[string]any `json:"resource"`
	Attributes    map[string]any `json:"attributes"`
}

// JSONLines writes one JSON object per span and line.
type JSONLines struct {
	w *bufio.Writer
}

// NewJSONLines writes to w.
func NewJSONLines(w io.Writer) *JSONLines {
	return &JSONLines{w: bufio.NewWriterSize(w, 64<<10)}
}

// Name implements Sink.
func (*JSONLines) Name() string { return "json" }

// Export implements Sink.
func (j *JSONLines) Export(_ context.Context, spans []*correlate.Span) error {
	enc := json.NewEncoder(j.w)
	enc.SetEscapeHTML(false)
	for _, s := range spans {
		if err := enc.Encode(ToJSON(s)); err != nil {
			return err
		}
	}
	return j.w.Flush()
}

// Shutdown implements Sink.
func (j *JSONLines) Shutdown(context.Context) error { return j.w.Flush() }

// ToJSON converts a span to its JSON form.
func ToJSON(s *correlate.Span) JSONSpan {
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
