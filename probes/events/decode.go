package events

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/zerotrace/zerotrace/correlate"
)

// Event types (enum event_type in bpf/common/event.h).
const (
	typeHTTPServer = 1
)

// Bits of http_server_event.info.
const (
	infoResponseKnown = 1 << 0
	infoTLS           = 1 << 1
	infoLocalAddr     = 1 << 2
)

// DecodeError says why a record could not be decoded.
type DecodeError struct {
	Kind string // "short", "unknown_type", "size"
	Type uint8
	Size int
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decoding ring buffer record (type %d, %d bytes): %s", e.Type, e.Size, e.Kind)
}

var (
	headerSize     = int(unsafe.Sizeof(commonEventHeader{}))
	httpServerSize = int(unsafe.Sizeof(commonHttpServerEvent{}))
)

// Decode turns one ring buffer record into an event. The record's memory is
// not retained: every string is copied.
func Decode(raw []byte, clock *Clock) (correlate.Event, error) {
	if len(raw) < headerSize {
		return nil, &DecodeError{Kind: "short", Size: len(raw)}
	}
	hdr := (*commonEventHeader)(unsafe.Pointer(&raw[0]))
	switch hdr.Type {
	case typeHTTPServer:
		if len(raw) < httpServerSize {
			return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
		}
		return decodeHTTPServer((*commonHttpServerEvent)(unsafe.Pointer(&raw[0])), clock), nil
	}
	return nil, &DecodeError{Kind: "unknown_type", Type: hdr.Type, Size: len(raw)}
}

func decodeHTTPServer(e *commonHttpServerEvent, clock *Clock) *correlate.HTTPServerRequest {
	r := &correlate.HTTPServerRequest{
		PID:           e.Hdr.Pid,
		GoroutineID:   e.Goid,
		Start:         clock.Wall(e.StartNs),
		End:           clock.Wall(e.Hdr.TsNs),
		Method:        cString(e.Method[:], e.MethodLen),
		Path:          cString(e.Path[:], e.PathLen),
		RawQuery:      cString(e.Query[:], e.QueryLen),
		Host:          cString(e.Host[:], e.HostLen),
		Pattern:       cString(e.Pattern[:], e.PatternLen),
		RemoteAddr:    cString(e.Remote[:], e.RemoteLen),
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
	if e.Info&infoLocalAddr != 0 {
		var addr netip.Addr
		switch e.LocalIpLen {
		case 4:
			addr = netip.AddrFrom4([4]byte(e.LocalIp[:4]))
		case 16:
			addr = netip.AddrFrom16(e.LocalIp).Unmap()
		}
		if addr.IsValid() {
			r.Local = netip.AddrPortFrom(addr, e.LocalPort)
		}
	}
	return r
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
