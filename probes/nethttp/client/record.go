package client

import (
	"fmt"
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
		// The round trip stays on the stack: the span, from the pool, is
		// all a record allocates besides its strings.
		var r RoundTrip
		decodeInto(&r, (*clientHttpClientEvent)(unsafe.Pointer(&raw[0])), d)
		if r.ModelCall {
			// Held by the correlator until its response's body ends.
			return &correlate.GoModelCall{Span: r.Span()}, nil
		}
		return r.Span(), nil
	},
}

// bodyHeader is the size of struct http_client_body before its data.
const bodyHeader = int(unsafe.Offsetof(clientHttpClientBody{}.Data))

// Bits of http_client_body.flags.
const (
	bodyWrite = uint8(clientHttpClientBodyFlagsHTTP_BODY_WRITE)
	bodyTail  = uint8(clientHttpClientBodyFlagsHTTP_BODY_TAIL)
	bodyEOF   = uint8(clientHttpClientBodyFlagsHTTP_BODY_EOF)
	bodyH2    = uint8(clientHttpClientBodyFlagsHTTP_BODY_H2)
)

// bodyRecord is struct http_client_body: the bytes of one write or read of
// a connection a model call uses, as long as its data.
var bodyRecord = events.Record{
	Type:    uint8(clientHttpClientBodyRecordEVENT_HTTP_CLIENT_BODY),
	Name:    "http_client_body",
	MinSize: bodyHeader,
	Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
		var e clientHttpClientBody
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), bodyHeader), raw[:bodyHeader])
		n := int(e.Len)
		if bodyHeader+n > len(raw) || n > len(e.Data) {
			return nil, fmt.Errorf("http_client_body: %d data bytes in a record of %d", n, len(raw))
		}
		b := &correlate.GoBody{
			PID:    e.Hdr.Pid,
			Conn:   e.Conn,
			SpanID: trace.SpanID(e.SpanId),
			Time:   d.Clock.Wall(e.Hdr.TsNs),
			Offset: e.Offset,
			Total:  e.Total,
			Write:  e.Flags&bodyWrite != 0,
			Tail:   e.Flags&bodyTail != 0,
			EOF:    e.Flags&bodyEOF != 0,
			H2:     e.Flags&bodyH2 != 0,
			Data:   append([]byte(nil), raw[bodyHeader:bodyHeader+n]...),
		}
		return b, nil
	},
}

// h2StreamRecord is struct http_client_h2_stream: the HTTP/2 stream a
// model call's request was given, on a connection whose bytes come in body
// records from then on.
var h2StreamRecord = events.Record{
	Type:    uint8(clientHttpClientH2StreamRecordEVENT_HTTP_CLIENT_H2STREAM),
	Name:    "http_client_h2_stream",
	MinSize: int(unsafe.Sizeof(clientHttpClientH2Stream{})),
	Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
		e := (*clientHttpClientH2Stream)(unsafe.Pointer(&raw[0]))
		n := min(int(e.PathLen), len(e.Path))
		path := make([]byte, n)
		for i := range path {
			path[i] = byte(e.Path[i])
		}
		return &correlate.GoH2Stream{
			PID:      e.Hdr.Pid,
			Conn:     e.Conn,
			SpanID:   trace.SpanID(e.SpanId),
			StreamID: e.StreamId,
			Time:     d.Clock.Wall(e.Hdr.TsNs),
			Path:     string(path),
			PathCut:  e.PathCut != 0,
		}, nil
	},
}

// Bits of http_client_event.info.
const (
	infoResponse = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_RESPONSE)
	infoError    = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_ERROR)
	infoPeerAddr = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_PEER_ADDR)
	infoGenAI    = uint8(clientHttpClientInfoHTTP_CLIENT_INFO_GENAI)
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
	// ModelCall: the request called a model API over HTTP/1.x, and its
	// bytes come in body records (the span ends with the response body).
	ModelCall bool
}

// Span returns the round trip's CLIENT span, taken from the span pool
// (model.NewSpan).
func (r *RoundTrip) Span() *model.Span {
	s := model.NewSpan()
	h := s.UseHTTP()
	h.Method, h.Scheme, h.Host = r.Method, r.Scheme, r.Host
	h.Path, h.Query = r.Path, r.RawQuery
	h.Peer = r.Peer
	if r.ContentLength > 0 {
		h.RequestBodySize = r.ContentLength
	}
	if r.HasResponse {
		h.Status = r.Status
	}
	s.Kind = trace.SpanKindClient
	s.Start, s.End = r.Start, r.End
	s.PID = r.PID
	s.Truncated = r.Truncated
	if r.Err {
		s.Failure = model.Failure{Failed: true, Type: r.ErrType}
	}
	s.SetIDs(r.IDs)
	return s
}

// decodeInto fills r from the record; its strings share one allocation.
func decodeInto(r *RoundTrip, e *clientHttpClientEvent, d *events.Decoder) {
	clock := d.Clock
	*r = RoundTrip{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		IDs:           events.SpanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		ContentLength: e.ContentLength,
		Truncated:     e.Truncated != 0,
	}
	events.CStrings(
		events.CField{Array: e.Method[:], Len: e.MethodLen, Dst: &r.Method},
		events.CField{Array: e.Scheme[:], Len: e.SchemeLen, Dst: &r.Scheme},
		events.CField{Array: e.Host[:], Len: e.HostLen, Dst: &r.Host},
		events.CField{Array: e.Path[:], Len: e.PathLen, Dst: &r.Path},
		events.CField{Array: e.Query[:], Len: e.QueryLen, Dst: &r.RawQuery},
	)
	if e.Info&infoResponse != 0 && e.Status >= 100 && e.Status <= 999 {
		r.HasResponse = true
		r.Status = int(e.Status)
	}
	r.ModelCall = e.Info&infoGenAI != 0
	if e.Info&infoPeerAddr != 0 {
		r.Peer = events.AddrPort(e.PeerIp, e.PeerIpLen, e.PeerPort)
	}
	if e.Info&infoError != 0 {
		r.Err = true
		r.ErrType = d.Name(e.Hdr.Pid, e.ErrType)
	}
}
