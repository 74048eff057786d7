package events

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// HTTPServerRequest is one request handled by a traced Go net/http server,
// from the moment its handler was called to the moment it returned, as the
// server probe's record gives it.
type HTTPServerRequest struct {
	PID         uint32
	GoroutineID uint64
	Start, End  time.Time
	IDs         model.SpanIDs

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

// Span returns the request's SERVER span.
func (r *HTTPServerRequest) Span() *model.Span {
	h := &model.HTTP{
		Method:  r.Method,
		Scheme:  "http",
		Host:    r.Host,
		Path:    r.Path,
		Query:   r.RawQuery,
		Route:   semconv.Route(r.Pattern),
		Version: semconv.ProtocolVersion(r.ProtoMajor, r.ProtoMinor),
		Local:   r.Local,
	}
	if r.TLS {
		h.Scheme = "https"
	}
	if r.ResponseKnown {
		h.Status = r.Status
		if h.Status == 0 {
			// The handler wrote nothing; net/http answers 200 when it finishes.
			h.Status = 200
		}
		h.ResponseBodySize, h.ResponseBodyKnown = r.ResponseBodySize, true
	}
	if r.ContentLength > 0 {
		h.RequestBodySize = r.ContentLength
	}
	if peer, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		h.Peer = peer
	}
	s := &model.Span{
		Kind:       trace.SpanKindServer,
		Start:      r.Start,
		End:        r.End,
		PID:        r.PID,
		TraceState: r.TraceState,
		Truncated:  r.Truncated,
		HTTP:       h,
	}
	s.SetIDs(r.IDs)
	return s
}

// HTTPClientRequest is one round trip made by a traced Go net/http client,
// as the client probe's record gives it.
type HTTPClientRequest struct {
	PID         uint32
	GoroutineID uint64
	Start, End  time.Time
	IDs         model.SpanIDs

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

// Span returns the round trip's CLIENT span.
func (r *HTTPClientRequest) Span() *model.Span {
	h := &model.HTTP{
		Method: r.Method,
		Scheme: r.Scheme,
		Host:   r.Host,
		Path:   r.Path,
		Query:  r.RawQuery,
		Peer:   r.Peer,
	}
	if r.ContentLength > 0 {
		h.RequestBodySize = r.ContentLength
	}
	if r.HasResponse {
		h.Status = r.Status
	}
	s := &model.Span{
		Kind:      trace.SpanKindClient,
		Start:     r.Start,
		End:       r.End,
		PID:       r.PID,
		Truncated: r.Truncated,
		HTTP:      h,
	}
	if r.Err {
		s.Failure = model.Failure{Failed: true, Type: r.ErrType}
	}
	s.SetIDs(r.IDs)
	return s
}
