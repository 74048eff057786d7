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

// CField is one C char array of a record, its length, and where its string
// goes (see CStrings).
type CField struct {
	Array []int8
	Len   uint16
	Dst   *string
}

// CStrings copies the record's char arrays as CString does, into strings
// that share one allocation: a record's strings are made together and die
// together, and one allocation per record instead of one per string is
// what keeps the decoders' garbage down at tens of thousands of records a
// second. A string that is not valid UTF-8 costs one more.
func CStrings(fields ...CField) {
	total := 0
	for i := range fields {
		f := &fields[i]
		if int(f.Len) > len(f.Array) {
			f.Len = uint16(len(f.Array))
		}
		total += int(f.Len)
	}
	if total == 0 {
		for _, f := range fields {
			*f.Dst = ""
		}
		return
	}
	buf := make([]byte, 0, total)
	for _, f := range fields {
		if f.Len > 0 {
			buf = append(buf, unsafe.Slice((*byte)(unsafe.Pointer(&f.Array[0])), f.Len)...)
		}
	}
	// buf is never written again: the string may share its memory.
	all := unsafe.String(&buf[0], len(buf))
	off := 0
	for _, f := range fields {
		s := all[off : off+int(f.Len)]
		off += int(f.Len)
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		*f.Dst = s
	}
}
