package events

import (
	"net/netip"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// What the decoders of every probe's records share.

// CString copies the first n bytes of a fixed-size C char array. Bytes that
// are not UTF-8 (a percent-decoded path may hold anything, and truncation
// can split a character) become U+FFFD: exporters need valid strings, and
// OTLP's protobuf encoding rejects a whole batch over one bad one. A length
// past the array, which only a broken record has, is cut to the array.
func CString(b []int8, n uint16) string {
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

// AddrPort turns an address as net.IP held it (n = 4 or 16 bytes) and a
// port into a netip.AddrPort, invalid for any other length.
func AddrPort(ip [16]uint8, n uint8, port uint16) netip.AddrPort {
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

// SpanIDs turns a record's struct span_ids into the span's IDs.
func SpanIDs(traceID [16]uint8, spanID, parent [8]uint8) model.SpanIDs {
	return model.SpanIDs{TraceID: traceID, SpanID: spanID, Parent: parent}
}
