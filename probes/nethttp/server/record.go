package server

import (
	"net/netip"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"github.com/zerotrace/zerotrace/probes/events"
)

// record is the probe's ring-buffer record, struct http_server_event
// (bpf/nethttp/server/record.h).
var record = events.Record{
	Type:    uint8(serverHttpServerRecordEVENT_HTTP_SERVER),
	Name:    "http_server_event",
	MinSize: int(unsafe.Sizeof(serverHttpServerEvent{})),
	Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
		// The request stays on the stack: the span, from the pool, is
		// all a record allocates besides its strings.
		var r Request
		decodeInto(&r, (*serverHttpServerEvent)(unsafe.Pointer(&raw[0])), d.Clock)
		return r.Span(), nil
	},
}

// Bits of http_server_event.info that decoding reads (HTTP_INFO_REMOTE_PARENT
// is not needed: the ids carry the parent either way).
const (
	infoResponseKnown = uint8(serverHttpServerInfoHTTP_INFO_RESPONSE_KNOWN)
	infoTLS           = uint8(serverHttpServerInfoHTTP_INFO_TLS)
	infoLocalAddr     = uint8(serverHttpServerInfoHTTP_INFO_LOCAL_ADDR)
	infoStateDropped  = uint8(serverHttpServerInfoHTTP_INFO_TRACESTATE_DROPPED)
	infoPanicked      = uint8(serverHttpServerInfoHTTP_INFO_PANICKED)
	infoHijacked      = uint8(serverHttpServerInfoHTTP_INFO_HIJACKED)
)

// Request is one request handled by a traced Go net/http server, from the
// moment its handler was called to the moment its response was written
// (HTTP/1.x), its handler returned (HTTP/2, or a hijacked connection) or
// panicked, as the server probe's record gives it.
type Request struct {
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
	// They are not for ResponseWriters the probe does not know, or when the
	// binary lacks what they are read with.
	ResponseKnown    bool
	Status           int   // 0 when the handler wrote nothing: net/http then sends 200
	ResponseBodySize int64 // the body bytes sent: none for a HEAD request

	// Panicked: the handler panicked, and net/http sent no response (or
	// only what the handler had flushed) before closing the connection.
	Panicked bool
	// Hijacked: the handler took the connection over; the span covers it
	// until it returned.
	Hijacked bool

	Local     netip.AddrPort // the server's socket address, invalid when unknown
	TLS       bool
	Truncated bool // some string was longer than the probe copies
}

// Span returns the request's SERVER span, taken from the span pool
// (model.NewSpan).
func (r *Request) Span() *model.Span {
	s := model.NewSpan()
	h := s.UseHTTP()
	h.Method, h.Scheme, h.Host = r.Method, "http", r.Host
	h.Path, h.Query = r.Path, r.RawQuery
	h.Route = semconv.Route(r.Pattern)
	h.Version = semconv.ProtocolVersion(r.ProtoMajor, r.ProtoMinor)
	h.Local = r.Local
	if r.TLS {
		h.Scheme = "https"
	}
	if r.ResponseKnown {
		h.Status = r.Status
		if h.Status == 0 && !r.Panicked && !r.Hijacked {
			// The handler wrote nothing; net/http answers 200 when it finishes.
			h.Status = 200
		}
		h.ResponseBodySize, h.ResponseBodyKnown = r.ResponseBodySize, !r.Hijacked
	}
	if r.ContentLength > 0 {
		h.RequestBodySize = r.ContentLength
	}
	if peer, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		h.Peer = peer
	}
	s.Kind = trace.SpanKindServer
	s.Start, s.End = r.Start, r.End
	s.PID = r.PID
	s.TraceState = r.TraceState
	s.Truncated = r.Truncated
	if r.Panicked {
		s.Failure = model.Failure{Failed: true, Type: "panic", Message: "the handler panicked"}
	}
	s.SetIDs(r.IDs)
	return s
}

// decodeInto fills r from the record; its strings share one allocation.
func decodeInto(r *Request, e *serverHttpServerEvent, clock *events.Clock) {
	*r = Request{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		IDs:           events.SpanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		ProtoMajor:    int(e.ProtoMajor),
		ProtoMinor:    int(e.ProtoMinor),
		ContentLength: e.ContentLength,
		TLS:           e.Info&infoTLS != 0,
		Truncated:     e.Truncated != 0,
		Panicked:      e.Info&infoPanicked != 0,
		Hijacked:      e.Info&infoHijacked != 0,
	}
	events.CStrings(
		events.CField{Array: e.Method[:], Len: e.MethodLen, Dst: &r.Method},
		events.CField{Array: e.Path[:], Len: e.PathLen, Dst: &r.Path},
		events.CField{Array: e.Query[:], Len: e.QueryLen, Dst: &r.RawQuery},
		events.CField{Array: e.Host[:], Len: e.HostLen, Dst: &r.Host},
		events.CField{Array: e.Pattern[:], Len: e.PatternLen, Dst: &r.Pattern},
		events.CField{Array: e.Remote[:], Len: e.RemoteLen, Dst: &r.RemoteAddr},
		events.CField{Array: e.Tracestate[:], Len: e.TracestateLen, Dst: &r.TraceState},
	)
	if e.Info&infoResponseKnown != 0 {
		r.ResponseKnown = true
		r.Status = int(e.Status)
		r.ResponseBodySize = e.RespWritten
		if r.Status != 0 && (r.Status < 100 || r.Status > 999) {
			// Not a status net/http could have written: do not report it.
			r.ResponseKnown = false
			r.Status = 0
		}
		if r.Method == "HEAD" {
			// net/http counts what a HEAD handler writes, and discards it.
			r.ResponseBodySize = 0
		}
	}
	if e.Info&infoStateDropped != 0 {
		r.Truncated = true
	}
	if e.Info&infoLocalAddr != 0 {
		r.Local = events.AddrPort(e.LocalIp, e.LocalIpLen, e.LocalPort)
	}
}
