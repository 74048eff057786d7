// Package protocols is the shape every wire-protocol parser takes: a Parser
// follows one protocol on one connection of one process, is fed the
// connection's reads and writes as Segments, and turns the exchanges it
// sees complete into spans (*model.Span, with their HTTP or DB exchange,
// times and IDs). Each protocol is a package beside this one (http1,
// postgres, mysql, redis; tlshello reads a TLS ClientHello's server name).
//
// Parsers parse; they do not join. Whoever feeds them — the correlator for
// the bytes syscall tracepoints capture, later the plaintext of TLS
// libraries — owns the connection table, the bounds, the process's
// lifecycle and the choice of IDs, and lends a parser what it needs of
// those through Env.
//
// Parsers are plain Go, have no goroutines and are not safe for concurrent
// use: one feeder calls one parser at a time. They keep no reference to a
// Segment's bytes after Feed returns, so a feeder may reuse them.
package protocols

import (
	"net/netip"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
)

// Dir is what a segment is, seen from the traced process.
type Dir uint8

// Directions.
const (
	// Read: bytes the process received.
	Read Dir = iota + 1
	// Write: bytes the process sent.
	Write
	// ReadMore: the read after one that started an HTTP request, whatever
	// it holds (the rest of a head that arrived in pieces, or a body). The
	// kernel path reports it as such because it does not copy every read
	// of a connection: the parser takes it for the rest of the head when
	// the head is open, else ignores it, but for a model call's request
	// body, every read of which the kernel path reports. (A feeder that sees every byte,
	// such as TLS plaintext, will need http1 to skip request bodies by
	// their length itself.)
	ReadMore
	// WriteBody: a later write of a response body after its head: Len and
	// Tail, no Data (the kernel path does not copy bodies, but for a model
	// call's answer, whose first bytes are in Data).
	WriteBody
	// WriteMore: a write of a model call's request body after its head
	// (the kernel path reports those of the calls a process makes, and no
	// other write of a body).
	WriteMore
	// ReadBody: a read of a model call's response body after its head, by
	// the process making the call (the kernel path reports those, and no
	// other read of a response's body).
	ReadBody
)

// Segment is one read or write of a connection.
type Segment struct {
	Dir Dir
	// Time is when the read or write was made; for WriteBody, when it
	// returned.
	Time time.Time
	// TID is the thread that made it.
	TID uint32
	// Len is the bytes read or written (for a write: asked to be sent,
	// except WriteBody: sent), which may be more than Data holds.
	Len uint32
	// Data is the first bytes, as far as the capture copied them (512 on
	// the kernel path).
	Data []byte
	// Tail is the last bytes of a write (at most 8), of its last buffer
	// for a vectored write; nil when unknown.
	Tail []byte
	// Ready: a read that ends where the server waits for the next
	// request (a PostgreSQL ReadyForQuery, the last packet of a MySQL
	// response), as the capture saw it at the read's end however much of
	// it Data holds.
	Ready bool
	// Partial: Len and Tail cover only part of a vectored write.
	Partial bool
	// End is the last bytes of the read or write past Data, when the
	// capture copied them as well (a model call's body on the kernel
	// path, whose middle is not copied): Len-len(Data)-len(End) bytes lie
	// between Data and End. nil when not copied, or when Data holds all.
	End []byte
}

// Conn is what the feeder knows of the connection a parser follows.
type Conn struct {
	// Local and Remote are the TCP endpoints, invalid when unknown.
	Local, Remote netip.AddrPort
	// RemoteAddr is Remote's address as text, which a feeder sets when it
	// learns Remote so that the spans naming the server share one string
	// ("" to have it computed for each).
	RemoteAddr string
	// Unix: a Unix-domain socket.
	Unix bool
	// TLS: the bytes are the plaintext of a TLS connection, which the
	// feeder decrypted (else they are what went over the wire).
	TLS bool
	// Source is the capture path, given to every span.
	Source model.Source
	// GenAI is the configuration of model calls (which requests are
	// calls, what is kept of them); nil: the defaults.
	GenAI *genai.Config
}

// Env is what a parser borrows from its feeder. One Env serves one
// connection of one process; the thread IDs it is given are that
// process's.
//
// A thread serving exactly one request makes its calls that request's
// children (a thread-per-request server); a thread serving several at once
// (an event loop) gives its calls no parent, since there is no telling
// which request they belong to. The parser says what a thread serves
// (Serve, Done); the feeder decides the IDs.
type Env interface {
	// Conn is the connection as known now: its endpoints may be learnt
	// after the parser was made, so read it when a span is built.
	Conn() Conn
	// Serve fills *ids with the IDs of a request thread tid read now (the
	// root of a new trace) and records that the thread serves it until
	// Done(tid, ids). The parser owns *ids and may change its trace and
	// parent meanwhile (the request continues a caller's trace): calls
	// the thread makes read *ids when they are made.
	Serve(tid uint32, ids *model.SpanIDs)
	// Done records that the request whose IDs are at ids was answered, or
	// given up.
	Done(tid uint32, ids *model.SpanIDs)
	// Call chooses the IDs of a call (a request, a query, a command)
	// thread tid writes now: a child of the request it serves, if it
	// serves exactly one, else the root of a new trace.
	Call(tid uint32) model.SpanIDs
	// Malformed counts data that started like the protocol but did not
	// parse (it makes no span).
	Malformed()
	// Unanswered counts an exchange the parser gave up on its own, no
	// answer seen (a MySQL command followed by the next). Those the
	// feeder drops or finds pending at the end it counts itself.
	Unanswered()
}

// Parser follows one protocol on one connection. The feeder bounds what it
// holds: after each Feed, while Pending is above its bound, it calls
// DropOldest and counts the exchange as unanswered; at the end it counts
// what is still Pending the same way.
type Parser interface {
	// Feed reads one segment and appends to out the spans of the
	// exchanges it completes (none, one, or several: a read may answer
	// pipelined requests).
	Feed(out []*model.Span, s *Segment) []*model.Span
	// Flush ends, at the last data seen, the exchanges whose answer was
	// being sent and whose end only the connection's end could tell (a
	// response framed by the close): the process exited, or the feeder
	// stops. It appends their spans to out.
	Flush(out []*model.Span) []*model.Span
	// Close settles the connection at its close: Flush, and an answer
	// being received whose end the parser could not see (it lost its
	// place, or the protocol tells no end but the next request) ends at
	// its last read. It appends their spans to out; what is Pending
	// afterwards was never answered. A closed parser is not fed again.
	Close(out []*model.Span) []*model.Span
	// Pending is how many exchanges await their answer.
	Pending() int
	// DropOldest gives up the exchange that has waited longest.
	DropOldest()
}

// New makes the parser of one connection.
type New func(env Env) Parser

// remoteAddr is Remote's address as text.
func (c *Conn) remoteAddr() string {
	if c.RemoteAddr != "" {
		return c.RemoteAddr
	}
	return c.Remote.Addr().String()
}
