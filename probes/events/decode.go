package events

import (
	"net/netip"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/zerotrace/zerotrace/correlate/model"

	"github.com/zerotrace/zerotrace/correlate"
)

// Event types (enum event_type in bpf/common/event.h).
const (
	typeHTTPServer = 1
	typeHTTPClient = 2
	typeDBQuery    = 3
	typeSockData   = 4
	typeConn       = 5
	typeTask       = 6
)

// Bits of db_query_event.truncated.
const dbTruncQuery = 1 << 0

// Bits of http_client_event.info.
const (
	clientInfoResponse = 1 << 0
	clientInfoError    = 1 << 1
	clientInfoPeerAddr = 1 << 2
)

// task_event.kind (enum task_kind): an exit; else a fork.
const taskExit = 2

// sock_data_event.flags (enum sock_data_flags): a PostgreSQL read that ends
// with ReadyForQuery.
const (
	sockFlagReady   = 1 << 0
	sockFlagPartial = 1 << 1
)

// Bits of http_server_event.info that decoding reads (HTTP_INFO_REMOTE_PARENT,
// 1 << 3, is not needed: the ids carry the parent either way).
const (
	infoResponseKnown = 1 << 0
	infoTLS           = 1 << 1
	infoLocalAddr     = 1 << 2
	infoStateDropped  = 1 << 4
)

var (
	httpServerSize = int(unsafe.Sizeof(commonHttpServerEvent{}))
	httpClientSize = int(unsafe.Sizeof(commonHttpClientEvent{}))
	dbQuerySize    = int(unsafe.Sizeof(commonDbQueryEvent{}))
	connSize       = int(unsafe.Sizeof(commonConnEvent{}))
	taskSize       = int(unsafe.Sizeof(commonTaskEvent{}))
	// A close record stops before the data.
	sockDataMin = int(unsafe.Offsetof(commonSockDataEvent{}.Data))
)

// Decode turns one ring buffer record into an event. The record's memory is
// not retained: every string is copied. namer may be nil.
func Decode(raw []byte, clock *Clock, namer ErrTypeNamer) (correlate.Event, error) {
	if len(raw) < headerSize {
		return nil, &DecodeError{Kind: "short", Size: len(raw)}
	}
	hdr := (*commonEventHeader)(unsafe.Pointer(&raw[0]))
	switch hdr.Type {
	case typeHTTPServer:
		if len(raw) < httpServerSize {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		return decodeHTTPServer((*commonHttpServerEvent)(unsafe.Pointer(&raw[0])), clock).Span(), nil
	case typeHTTPClient:
		if len(raw) < httpClientSize {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		return decodeHTTPClient((*commonHttpClientEvent)(unsafe.Pointer(&raw[0])), clock, namer).Span(), nil
	case typeDBQuery:
		if len(raw) < dbQuerySize {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		return decodeDBQuery((*commonDbQueryEvent)(unsafe.Pointer(&raw[0])), clock, namer).Span(), nil
	case typeConn:
		if len(raw) < connSize {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		return decodeConn((*commonConnEvent)(unsafe.Pointer(&raw[0])), clock), nil
	case typeTask:
		if len(raw) < taskSize {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		e := (*commonTaskEvent)(unsafe.Pointer(&raw[0]))
		return &correlate.TaskEvent{PID: e.Hdr.Pid, Parent: e.Parent, Exit: e.Kind == taskExit}, nil
	case typeSockData:
		if len(raw) < sockDataMin {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		return decodeSockData(raw, clock)
	}
	return nil, &DecodeError{Kind: "unknown_type", Type: hdr.Type, Size: len(raw)}
}

func decodeHTTPServer(e *commonHttpServerEvent, clock *Clock) *HTTPServerRequest {
	r := &HTTPServerRequest{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		IDs:           spanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		Method:        cString(e.Method[:], e.MethodLen),
		Path:          cString(e.Path[:], e.PathLen),
		RawQuery:      cString(e.Query[:], e.QueryLen),
		Host:          cString(e.Host[:], e.HostLen),
		Pattern:       cString(e.Pattern[:], e.PatternLen),
		RemoteAddr:    cString(e.Remote[:], e.RemoteLen),
		TraceState:    cString(e.Tracestate[:], e.TracestateLen),
		ProtoMajor:    int(e.ProtoMajor),
		ProtoMinor:    int(e.ProtoMinor),
		ContentLength: e.ContentLength,
		TLS:           e.Info&infoTLS != 0,
		Truncated:     e.Truncated != 0,
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
	}
	if e.Info&infoStateDropped != 0 {
		r.Truncated = true
	}
	if e.Info&infoLocalAddr != 0 {
		r.Local = addrPort(e.LocalIp, e.LocalIpLen, e.LocalPort)
	}
	return r
}

// addrPort turns an address as net.IP held it (4 or 16 bytes) and a port
// into a netip.AddrPort, invalid for any other length.
func addrPort(ip [16]uint8, n uint8, port uint16) netip.AddrPort {
	var addr netip.Addr
	switch n {
	case 4:
		addr = netip.AddrFrom4([4]byte(ip[:4]))
	case 16:
		addr = netip.AddrFrom16(ip).Unmap()
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, port)
}

func spanIDs(traceID [16]uint8, spanID, parent [8]uint8) model.SpanIDs {
	return model.SpanIDs{TraceID: traceID, SpanID: spanID, Parent: parent}
}

func decodeHTTPClient(e *commonHttpClientEvent, clock *Clock, namer ErrTypeNamer) *HTTPClientRequest {
	r := &HTTPClientRequest{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		IDs:           spanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		Method:        cString(e.Method[:], e.MethodLen),
		Scheme:        cString(e.Scheme[:], e.SchemeLen),
		Host:          cString(e.Host[:], e.HostLen),
		Path:          cString(e.Path[:], e.PathLen),
		RawQuery:      cString(e.Query[:], e.QueryLen),
		ContentLength: e.ContentLength,
		Truncated:     e.Truncated != 0,
	}
	if e.Info&clientInfoResponse != 0 && e.Status >= 100 && e.Status <= 999 {
		r.HasResponse = true
		r.Status = int(e.Status)
	}
	if e.Info&clientInfoPeerAddr != 0 {
		r.Peer = addrPort(e.PeerIp, e.PeerIpLen, e.PeerPort)
	}
	if e.Info&clientInfoError != 0 {
		r.Err = true
		if namer != nil {
			r.ErrType = namer(e.Hdr.Pid, e.ErrType)
		}
	}
	return r
}

func decodeConn(e *commonConnEvent, clock *Clock) *correlate.ConnEvent {
	n := uint8(16)
	if e.Family == 2 { // AF_INET
		n = 4
	}
	return &correlate.ConnEvent{
		PID:           e.Hdr.Pid,
		Sock:          e.Sock,
		Time:          clock.Wall(e.Hdr.TsNs),
		Open:          e.Kind == 1,
		Server:        e.Role == 2,
		Local:         addrPort(e.LocalIp, n, e.LocalPort),
		Remote:        addrPort(e.RemoteIp, n, e.RemotePort),
		BytesReceived: e.BytesReceived,
		BytesSent:     e.BytesAcked,
	}
}

func decodeSockData(raw []byte, clock *Clock) (*correlate.SockData, error) {
	// Copy the fixed part: a close record is shorter than the struct.
	var e commonSockDataEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), sockDataMin), raw)
	d := &correlate.SockData{
		PID:     e.Hdr.Pid,
		TID:     e.Tid,
		FD:      e.Fd,
		Time:    clock.Wall(e.Hdr.TsNs),
		Sock:    e.Sock,
		Dir:     correlate.SockDir(e.Dir),
		Proto:   correlate.SockProto(e.Proto),
		Ready:   e.Flags&sockFlagReady != 0,
		Partial: e.Flags&sockFlagPartial != 0,
		Len:     e.Len,
	}
	switch e.Family {
	case 2, 10: // AF_INET, AF_INET6
		n := uint8(16)
		if e.Family == 2 {
			n = 4
		}
		d.Local = addrPort(e.LocalIp, n, e.LocalPort)
		d.Remote = addrPort(e.RemoteIp, n, e.RemotePort)
	case 1: // AF_UNIX
		d.Unix = true
	}
	if d.Dir == correlate.SockClose {
		return d, nil
	}
	n := int(e.Cap)
	if n > len(e.Data) || sockDataMin+n > len(raw) {
		return nil, &DecodeError{Kind: "size", Type: typeSockData, Size: len(raw)}
	}
	// Data and tail in one allocation: one per record.
	tn := min(int(e.TailLen), len(e.Tail))
	if n+tn == 0 {
		return d, nil
	}
	buf := make([]byte, n+tn)
	copy(buf, raw[sockDataMin:sockDataMin+n])
	for i := range tn {
		buf[n+i] = byte(e.Tail[i])
	}
	d.Data, d.Tail = buf[:n:n], buf[n:]
	return d, nil
}

func decodeDBQuery(e *commonDbQueryEvent, clock *Clock, namer ErrTypeNamer) *DBQuery {
	q := &DBQuery{
		PID:            e.Hdr.Pid,
		GoroutineID:    e.Goid,
		Start:          clock.Wall(e.StartNs),
		End:            clock.Wall(e.Hdr.TsNs),
		IDs:            spanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		Call:           DBCall(e.Call),
		Query:          cString(e.Query[:], e.QueryLen),
		QueryTruncated: e.Truncated&dbTruncQuery != 0,
		DSNs:           [2]string{cString(e.Dsn[0][:], e.DsnLen[0]), cString(e.Dsn[1][:], e.DsnLen[1])},
		Err:            e.ErrType != 0,
	}
	for i := range q.ErrStrings {
		q.ErrStrings[i] = cString(e.ErrMsg[i][:], e.ErrLen[i])
	}
	if namer != nil {
		if e.ConnectorType != 0 {
			q.Connector = namer(e.Hdr.Pid, e.ConnectorType)
		}
		if e.DriverType != 0 {
			q.Driver = namer(e.Hdr.Pid, e.DriverType)
		}
		if e.ErrType != 0 {
			q.ErrType = namer(e.Hdr.Pid, e.ErrType)
		}
		if e.ResultType != 0 {
			q.ResultType = namer(e.Hdr.Pid, e.ResultType)
			q.ResultWords = e.ResultWords
		}
	}
	return q
}

// cString copies the first n bytes of a fixed-size C char array. Bytes that
// are not UTF-8 (a percent-decoded path may hold anything, and truncation
// can split a character) become U+FFFD: exporters need valid strings, and
// OTLP's protobuf encoding rejects a whole batch over one bad one.
func cString(b []int8, n uint16) string {
	if int(n) > len(b) {
		n = uint16(len(b))
	}
	if n == 0 {
		return ""
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), n)
	if !utf8.Valid(raw) {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	return string(raw)
}
