package http1

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"go.opentelemetry.io/otel/trace"
)

// head is a parsed request head.
type head struct {
	start                   time.Time
	method, target, version string
	host                    string
	// The last traceparent field: parent is set when it was a valid one,
	// which traceID and spanID then hold; tracestate is the last
	// tracestate field.
	parent     bool
	traceID    trace.TraceID
	spanID     trace.SpanID
	tracestate string
	// open is set while the head's end has not been seen; tail is its last,
	// unfinished line, which the next read continues.
	open bool
	tail []byte
	// The span's IDs, chosen when the request is seen so that what the
	// serving thread calls meanwhile can name it as parent; tid is that
	// thread.
	ids model.SpanIDs
	tid uint32
	// A model call's exchange, reading its bodies (nil for other
	// requests); the request body bytes still to come (-1 until the
	// head's Content-Length is known), and whether bytes of the request's
	// or the response's body were lost to the capture.
	gx                *genai.Exchange
	bodyLeft          int64
	reqLost, respLost bool
	lastRead          int // the bytes the last read's record held
}

// reset empties h for another request, keeping its tail's memory.
func (h *head) reset() {
	*h = head{tail: h.tail[:0]}
}

// Body lengths parseFields reports besides a Content-Length.
const (
	bodyUnknown = -1 // no framing field
	bodyChunked = -2 // Transfer-Encoding: where it ends is not known here
)

// parseFields reads header lines from b up to the blank line that ends the
// head, into h when h is not nil (a response's fields matter only for its
// body's length); lastHost is the Host the connection's previous request
// named, reused rather than copied when this one names the same. It returns what follows the head, the body length
// (Content-Length, or bodyUnknown or bodyChunked) and whether the head
// ended in b; if not, h stays open with its unfinished last line kept for
// the next read.
func parseFields(b []byte, h *head, lastHost string) (rest []byte, body int, ended bool) {
	body = bodyUnknown
	for {
		line, after, found := bytes.Cut(b, crlf)
		if !found {
			if h != nil {
				// line may lie in h.tail itself: append moves it down.
				h.open, h.tail = true, append(h.tail[:0], line...)
			}
			return nil, body, false
		}
		b = after
		if len(line) == 0 {
			return b, body, true // end of the head
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v := bytes.TrimSpace(value)
		switch {
		case h != nil && lowerIs(name, "host"):
			if string(v) == lastHost {
				h.host = lastHost
			} else {
				h.host = string(v)
			}
		case h != nil && lowerIs(name, "traceparent"):
			h.traceID, h.spanID, h.parent = parseTraceparent(v)
		case h != nil && lowerIs(name, "tracestate"):
			h.tracestate = string(v)
		case lowerIs(name, "content-length"):
			if n, err := strconv.Atoi(string(v)); err == nil && n >= 0 {
				body = n
			}
		case lowerIs(name, "transfer-encoding"):
			body = bodyChunked
		}
	}
}

var crlf = []byte("\r\n")

// lowerIs says whether b, lower-cased, is the lower-case ASCII name. Only
// ASCII letters fold: no other character lower-cases to one of a field
// name's letters (the Kelvin sign's k is in none of them).
func lowerIs(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

func isToken(c byte) bool { return c >= 'A' && c <= 'Z' }

// parseRequestLine parses "METHOD target HTTP/1.x" into h. A line that is
// not complete (a request sent in pieces, or longer than the capture) is
// taken for what it shows when it has a method and the start of a target.
func parseRequestLine(line []byte, complete bool, h *head) bool {
	// Two or three words, one space apart.
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return false
	}
	target, version, three := bytes.Cut(rest, []byte(" "))
	if three && bytes.IndexByte(version, ' ') >= 0 {
		return false
	}
	if len(method) == 0 || len(method) > 16 || len(target) == 0 {
		return false
	}
	for _, c := range method {
		if !isToken(c) {
			return false
		}
	}
	if three && len(version) == 8 && bytes.HasPrefix(version, []byte("HTTP/1.")) {
		h.method, h.target, h.version = methodString(method), string(target), versionString(version[5:])
		return true
	}
	if complete {
		return false
	}
	h.method, h.target = methodString(method), string(target)
	return true
}

// methodString is m as a string, without allocating for the usual methods.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	}
	return string(m)
}

// versionString is "1.x" as a string, without allocating for 1.0 and 1.1.
func versionString(v []byte) string {
	switch string(v) {
	case "1.1":
		return "1.1"
	case "1.0":
		return "1.0"
	}
	return string(v)
}

// parseStatusLine reads the status code of "HTTP/1.x NNN ...".
func parseStatusLine(b []byte) (int, bool) {
	line, _, _ := bytes.Cut(b, crlf)
	if len(line) < 12 || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return 0, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, false
	}
	return code, true
}

// parseTraceparent reads a version-00 W3C traceparent.
func parseTraceparent(v []byte) (trace.TraceID, trace.SpanID, bool) {
	var tid trace.TraceID
	var sid trace.SpanID
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || v[0] == 'f' && v[1] == 'f' {
		return tid, sid, false
	}
	if _, err := hex.Decode(tid[:], v[3:35]); err != nil {
		return tid, sid, false
	}
	if _, err := hex.Decode(sid[:], v[36:52]); err != nil {
		return tid, sid, false
	}
	if hasUpper(v) || !tid.IsValid() || !sid.IsValid() {
		return tid, sid, false
	}
	return tid, sid, true
}

// hasUpper says whether lower-casing s would change it.
func hasUpper(s []byte) bool {
	for len(s) > 0 {
		c := s[0]
		if c < 0x80 {
			if 'A' <= c && c <= 'Z' {
				return true
			}
			s = s[1:]
			continue
		}
		return !bytes.Equal(bytes.ToLower(s), s)
	}
	return false
}
