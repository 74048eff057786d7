package correlate

// Event is a decoded probe record: a finished span of a Go probe
// (*model.Span), the bytes of a socket read or write (*SockData), a TCP
// connection opening or closing (*ConnEvent), or a traced process forking
// or exiting (*TaskEvent).
type Event interface {
	// ProcessID is the traced process that produced the event.
	ProcessID() uint32
}
