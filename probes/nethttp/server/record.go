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
		return decode((*serverHttpServerEvent)(unsafe.Pointer(&raw[0])), d.Clock).Span(), nil
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

// Span returns the request's SERVER span.
func (r *Request) Span() *model.Span {
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
	s := &model.Span{
		Kind:       trace.SpanKindServer,
		Start:      r.Start,
		End:        r.End,
		PID:        r.PID,
		TraceState: r.TraceState,
		Truncated:  r.Truncated,
		HTTP:       h,
	}
	if r.Panicked {
		s.Failure = model.Failure{Failed: true, Type: "panic", Message: "the handler panicked"}
	}
	s.SetIDs(r.IDs)
	return s
}

func decode(e *serverHttpServerEvent, clock *events.Clock) *Request {
	r := &Request{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		IDs:           events.SpanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		Method:        events.CString(e.Method[:], e.MethodLen),
		Path:          events.CString(e.Path[:], e.PathLen),
		RawQuery:      events.CString(e.Query[:], e.QueryLen),
		Host:          events.CString(e.Host[:], e.HostLen),
		Pattern:       events.CString(e.Pattern[:], e.PatternLen),
		RemoteAddr:    events.CString(e.Remote[:], e.RemoteLen),
		TraceState:    events.CString(e.Tracestate[:], e.TracestateLen),
		ProtoMajor:    int(e.ProtoMajor),
		ProtoMinor:    int(e.ProtoMinor),
		ContentLength: e.ContentLength,
		TLS:           e.Info&infoTLS != 0,
		Truncated:     e.Truncated != 0,
		Panicked:      e.Info&infoPanicked != 0,
		Hijacked:      e.Info&infoHijacked != 0,
	}
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
	return r
}
