package correlate

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span is a finished span, ready for export.
type Span struct {
	TraceID      trace.TraceID
	SpanID       trace.SpanID
	ParentSpanID trace.SpanID // invalid (zero) for a root span
	// TraceState is the W3C tracestate that came with an incoming
	// traceparent.
	TraceState string
	Name       string
	Kind       trace.SpanKind
	Start, End time.Time
	Status     codes.Code
	StatusMsg  string
	Attributes []attribute.KeyValue
	Process    *Process
}
