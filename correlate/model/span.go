// Package model holds the one shape every span takes on its way out of the
// agent: a typed exchange per protocol family (HTTP, database, and the
// families still to come), filled in by every capture path — the Go probes'
// decoders and the byte-stream parsers alike — and turned into OpenTelemetry
// names and attributes once, by package semconv. Sinks read the typed
// fields; only exporters that speak OpenTelemetry read the attributes.
//
// The package is plain data: it imports nothing of the agent, so that
// probes, parsers, the correlator and the exporters can all depend on it.
package model

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Source says how a span was captured.
type Source uint8

// Capture paths.
const (
	// SourceGo: uprobes on a Go binary's functions.
	SourceGo Source = iota
	// SourceKernel: the bytes a process read and wrote, seen by syscall
	// tracepoints (any language).
	SourceKernel
)

// SpanIDs is the W3C trace context of a span. The probes choose IDs in the
// kernel so that children and outgoing requests can name a span before user
// space has seen it.
type SpanIDs struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Parent  trace.SpanID // invalid for a root span
}

// Span is one finished operation of a traced process.
//
// A producer fills in the identity, times, the process's PID and exactly one
// exchange (HTTP, DB). GenAI is the one exception to "one": it refines an
// HTTP exchange (a call to a model API) and is only ever set with HTTP. The
// correlator then gives it its Process and passes it to semconv.Apply, which
// redacts the exchange's strings in place and derives Name, Status,
// StatusMsg and Attributes from it.
type Span struct {
	TraceID      trace.TraceID
	SpanID       trace.SpanID
	ParentSpanID trace.SpanID // invalid (zero) for a root span
	// TraceState is the W3C tracestate that came with an incoming
	// traceparent.
	TraceState string
	Kind       trace.SpanKind
	Start, End time.Time

	// PID is the process that produced the span; Process is filled in
	// from it by the correlator.
	PID     uint32
	Process *Process
	Source  Source
	// Truncated: some string was longer than the probe or parser keeps.
	Truncated bool
	// Failure is set when the operation reported an error of its own
	// (a transport error, a database error), as opposed to a status code
	// that semconv reads as one.
	Failure Failure

	// The exchange: exactly one of HTTP and DB is set; GenAI refines
	// HTTP when the request was a call to a model API.
	HTTP  *HTTP
	DB    *DB
	GenAI *GenAI
	// Code is set, alone, on an INTERNAL span that is a call of one of
	// the program's own functions.
	Code *Code

	// Derived by semconv.Apply; producers leave them empty.
	Name       string
	Status     codes.Code
	StatusMsg  string
	Attributes []attribute.KeyValue

	// own is the pooled object holding the span (nil for a span not made
	// by NewSpan); refs its holds (see pool.go).
	own  *pooled
	refs int32 // sync/atomic only
}

// IDs returns the span's trace context.
func (s *Span) IDs() SpanIDs {
	return SpanIDs{TraceID: s.TraceID, SpanID: s.SpanID, Parent: s.ParentSpanID}
}

// SetIDs sets the span's trace context.
func (s *Span) SetIDs(ids SpanIDs) {
	s.TraceID, s.SpanID, s.ParentSpanID = ids.TraceID, ids.SpanID, ids.Parent
}

// Background tells whether the span is work a Go program did outside any
// request it served: a CLIENT span (an outgoing call, a query) with no
// parent. Go programs' probes give a call the span of the request being
// served on its goroutine or on the goroutine that started it, so a call
// without one comes from a ticker, a worker or a log writer that outlived
// its request. (A kernel-traced call without a parent may just be one whose
// request could not be told: it is not background.)
func (s *Span) Background() bool {
	return s.Kind == trace.SpanKindClient && s.Source == SourceGo && !s.ParentSpanID.IsValid()
}

// ProcessID is the traced process that produced the span.
func (s *Span) ProcessID() uint32 { return s.PID }

// Failure is an error the operation returned.
type Failure struct {
	Failed bool
	// Type is error.type: the error's Go type ("*net.OpError"), a
	// protocol's error code ("42P01", "WRONGTYPE"); "" reads as "error".
	Type string
	// Message is the status message; "" lets semconv choose one.
	Message string
}
