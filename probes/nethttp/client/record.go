package client

import (
	"net/netip"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/probes/events"
)

// record is the probe's ring-buffer record, struct http_client_event
// (bpf/nethttp/client/record.h).
var record = events.Record{
	Type:    uint8(clientHttpClientRecordEVENT_HTTP_CLIENT),
	Name:    "http_client_event",
	MinSize: int(unsafe.Sizeof(clientHttpClientEvent{})),
	Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
		return decode((*clientHttpClientEvent)(unsafe.Pointer(&raw[0])), d).Span(), nil
	},
}

// Bits of http_client_event.info.
const (
	infoResponse = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_RESPONSE)
	infoError    = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_ERROR)
	infoPeerAddr = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_PEER_ADDR)
)

// RoundTrip is one round trip made by a traced Go net/http client,
// as the client probe's record gives it.
type RoundTrip struct {
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
func (r *RoundTrip) Span() *model.Span {
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
func decode(e *clientHttpClientEvent, d *events.Decoder) *RoundTrip {
	clock := d.Clock
	r := &RoundTrip{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		IDs:           events.SpanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		Method:        events.CString(e.Method[:], e.MethodLen),
		Scheme:        events.CString(e.Scheme[:], e.SchemeLen),
		Host:          events.CString(e.Host[:], e.HostLen),
		Path:          events.CString(e.Path[:], e.PathLen),
		RawQuery:      events.CString(e.Query[:], e.QueryLen),
		ContentLength: e.ContentLength,
		Truncated:     e.Truncated != 0,
	}
	if e.Info&infoResponse != 0 && e.Status >= 100 && e.Status <= 999 {
		r.HasResponse = true
		r.Status = int(e.Status)
	}
	if e.Info&infoPeerAddr != 0 {
		r.Peer = events.AddrPort(e.PeerIp, e.PeerIpLen, e.PeerPort)
	}
	if e.Info&infoError != 0 {
		r.Err = true
		r.ErrType = d.Name(e.Hdr.Pid, e.ErrType)
	}
	return r
}
