package correlate

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Event is a decoded probe record. The concrete types are declared in this
// package so that the correlator can switch on them.
type Event interface {
	// ProcessID is the traced process that produced the event.
	ProcessID() uint32
}

// HTTPServerRequest is one request handled by a traced Go net/http server,
// from the moment its handler was called to the moment it returned.
type HTTPServerRequest struct {
	PID         uint32
	GoroutineID uint64
	Start, End  time.Time
	IDs         SpanIDs

	Method     string
	Path       string
	RawQuery   string // as sent, before redaction
	Host       string // Request.Host: the Host header or the URL's host
	Pattern    string // the ServeMux pattern that matched, "" when none or unknown
	RemoteAddr string // "ip:port" as net/http reports the peer

	TraceState string // the tracestate that came with a traceparent

	ProtoMajor, ProtoMinor int
	ContentLength          int64 // -1 when unknown

	// ResponseKnown tells whether Status and ResponseBodySize were read.
	// They are not for ResponseWriters other than net/http's HTTP/1.x one,
	// or when the binary has no symbol table to recognise it.
	ResponseKnown    bool
	Status           int // 0 when the handler wrote nothing: net/http then sends 200
	ResponseBodySize int64

	Local     netip.AddrPort // the server's socket address, invalid when unknown
	TLS       bool
	Truncated bool // some string was longer than the probe copies
}

// ProcessID implements Event.
func (r *HTTPServerRequest) ProcessID() uint32 { return r.PID }

// SpanIDs is the trace context the probes chose for a span: they pick IDs in
// the kernel so that children and outgoing requests can refer to a span
// before user space has seen it.
type SpanIDs struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Parent  trace.SpanID // invalid for a root span
}

// HTTPClientRequest is one round trip made by a traced Go net/http client.
type HTTPClientRequest struct {
	PID         uint32
	GoroutineID uint64
	Start, End  time.Time
	IDs         SpanIDs

	Method   string
	Scheme   string
	Host     string // the URL's host[:port]
	Path     string
	RawQuery string // as sent, before redaction

	ContentLength int64
	// Peer is the server's address on the TCP connection the request
	// went out on; invalid when unknown (TLS, HTTP/2, or no connection).
	Peer netip.AddrPort
	// HasResponse tells whether a response came back; Status is its code.
	HasResponse bool
	Status      int
	// Err is set when the round trip returned an error; ErrType names the
	// error's dynamic type when the binary's symbols allow ("*net.OpError").
	Err       bool
	ErrType   string
	Truncated bool
}

// ProcessID implements Event.
func (r *HTTPClientRequest) ProcessID() uint32 { return r.PID }
