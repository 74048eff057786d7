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
	// RemoteParent tells that the parent is in another process (known from
	// an incoming traceparent); TraceState is the W3C tracestate that came
	// with it.
	RemoteParent bool
	TraceState   string
	Name         string
	Kind         trace.SpanKind
	Start, End   time.Time
	Status       codes.Code
	StatusMsg    string
	Attributes   []attribute.KeyValue
	Process      *Process
}
