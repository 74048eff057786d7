package correlate

import (
	"net/netip"
	"time"
)

// Event is a decoded probe record. The concrete types are declared in this
// package so that the correlator can switch on them.
type Event interface {
	// ProcessID is the traced process that produced the event.
	ProcessID() uint32
}

// HTTPServerRequest is one request handled by a traced Go net/http server,
// from the moment its handler was called to the moment it returned.
type HTTPServerRequest struct {
	PID         uint32
	GoroutineID uint64
	Start, End  time.Time

	Method     string
	Path       string
	RawQuery   string // as sent, before redaction
	Host       string // Request.Host: the Host header or the URL's host
	Pattern    string // the ServeMux pattern that matched, "" when none or unknown
	RemoteAddr string // "ip:port" as net/http reports the peer

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

// ProcessID implements Event.
func (r *HTTPServerRequest) ProcessID() uint32 { return r.PID }
