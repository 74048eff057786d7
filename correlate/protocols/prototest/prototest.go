// Package prototest plays, for the tests of wire-protocol parsers, what
// feeds them: a traced process (IDs handed out in sequence, the requests
// each thread serves, the loss counters) and its connections, each a parser
// fed segments as the kernel path makes them. It also builds the messages
// of the protocols the parsers read.
package prototest

import (
	"net/netip"
	"slices"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"go.opentelemetry.io/otel/trace"
)

// Capture is how many bytes of a read or write the kernel path copies
// (SOCK_DATA_MAX). Segments made here are cut to it, with Len still the
// full size, because that is all a parser fed by the kernel gets to see.
const Capture = 512

// MaxPending is the bound a Wire holds a parser to, as the correlator does.
const MaxPending = 64

// Addresses of the connections the tests make.
var (
	Server = netip.MustParseAddrPort("10.0.0.5:5432")
	Client = netip.MustParseAddrPort("10.0.0.9:41000")
)

// Process is the traced process the connections of a test belong to.
type Process struct {
	n uint64
	// Serving holds the IDs of the requests each thread serves.
	Serving map[uint32][]*model.SpanIDs
	// Malformed and Unanswered count what the parsers and the wires said.
	Malformed, Unanswered int
}

// NewProcess returns a process serving nothing.
func NewProcess() *Process { return &Process{Serving: map[uint32][]*model.SpanIDs{}} }

func (p *Process) traceID() trace.TraceID {
	p.n++
	return trace.TraceID{0: 0xaa, 15: byte(p.n)}
}

func (p *Process) spanID() trace.SpanID {
	p.n++
	return trace.SpanID{0: 0xbb, 7: byte(p.n)}
}

// Env is one connection's protocols.Env.
type Env struct {
	P *Process
	C protocols.Conn
}

// Conn implements protocols.Env.
func (e *Env) Conn() protocols.Conn { return e.C }

// Serve implements protocols.Env.
func (e *Env) Serve(tid uint32, ids *model.SpanIDs) {
	*ids = model.SpanIDs{TraceID: e.P.traceID(), SpanID: e.P.spanID()}
	e.P.Serving[tid] = append(e.P.Serving[tid], ids)
}

// Done implements protocols.Env.
func (e *Env) Done(tid uint32, ids *model.SpanIDs) {
	list := slices.DeleteFunc(e.P.Serving[tid], func(x *model.SpanIDs) bool { return x == ids })
	if len(list) == 0 {
		delete(e.P.Serving, tid)
	} else {
		e.P.Serving[tid] = list
	}
}

// Call implements protocols.Env.
func (e *Env) Call(tid uint32) model.SpanIDs {
	if list := e.P.Serving[tid]; len(list) == 1 {
		return model.SpanIDs{TraceID: list[0].TraceID, SpanID: e.P.spanID(), Parent: list[0].SpanID}
	}
	return model.SpanIDs{TraceID: e.P.traceID(), SpanID: e.P.spanID()}
}

// Malformed implements protocols.Env.
func (e *Env) Malformed() { e.P.Malformed++ }

// Unanswered implements protocols.Env.
func (e *Env) Unanswered() { e.P.Unanswered++ }

// Wire plays one connection of a traced process to its parser: each call
// makes the segment the kernel path would for one read or write, one
// millisecond after the previous one.
type Wire struct {
	Parser protocols.Parser
	Env    *Env
	TID    uint32
	// Clock is shared by the wires of one test, so that times are
	// ordered across them; Last is when the latest segment was made.
	Clock *int
	Last  time.Time
	// Ready, when set, says whether a read of these bytes ends where the
	// server waits (Segment.Ready), as the probe tells from the user
	// buffer's end.
	Ready func(full []byte) bool
	// Closed is set once Close was called.
	Closed bool
}

// NewWire returns a wire to a new parser made by newParser, for process p,
// between Client and Server, on thread 100.
func NewWire(p *Process, newParser protocols.New, clock *int) *Wire {
	env := &Env{P: p, C: protocols.Conn{Local: Client, Remote: Server, Source: model.SourceKernel}}
	return &Wire{Parser: newParser(env), Env: env, TID: 100, Clock: clock}
}

func (w *Wire) tick() {
	if w.Clock == nil {
		return // the test times its segments itself
	}
	*w.Clock++
	w.Last = time.Unix(2000, 0).Add(time.Duration(*w.Clock) * time.Millisecond)
}

// Segment builds what the probe reports of a read or write of full: Data is
// at most its first Capture bytes, Len the whole size.
func (w *Wire) Segment(dir protocols.Dir, full []byte) *protocols.Segment {
	w.tick()
	s := &protocols.Segment{
		Dir: dir, Time: w.Last, TID: w.TID,
		Len:  uint32(len(full)),
		Data: slices.Clone(full[:min(len(full), Capture)]),
	}
	if dir == protocols.Read && w.Ready != nil {
		s.Ready = w.Ready(full)
	}
	return s
}

// Send feeds s as the correlator does (bounding what the parser holds),
// and returns the spans it completed with their names and attributes
// derived.
func (w *Wire) Send(s *protocols.Segment) []*model.Span {
	spans := w.Parser.Feed(nil, s)
	for w.Parser.Pending() > MaxPending {
		w.Parser.DropOldest()
		w.Env.P.Unanswered++
	}
	return Convert(spans)
}

// Write sends a write of b.
func (w *Wire) Write(b []byte) []*model.Span { return w.Send(w.Segment(protocols.Write, b)) }

// Read sends a read of b.
func (w *Wire) Read(b []byte) []*model.Span { return w.Send(w.Segment(protocols.Read, b)) }

// Close closes the connection: what is pending afterwards counts as
// unanswered.
func (w *Wire) Close() []*model.Span {
	w.tick()
	w.Closed = true
	spans := w.Parser.Close(nil)
	w.Env.P.Unanswered += w.Parser.Pending()
	return Convert(spans)
}

// ReadChunks delivers b as a series of reads of at most size bytes, the
// way a client with a buffer of that size would receive it. It returns
// every span, the index of the read that completed each, and the time of
// each read.
func (w *Wire) ReadChunks(b []byte, size int) (spans []*model.Span, at []int, times []time.Time) {
	for i := 0; len(b) > 0; i++ {
		n := min(size, len(b))
		for _, s := range w.Read(b[:n]) {
			spans, at = append(spans, s), append(at, i)
		}
		times = append(times, w.Last)
		b = b[n:]
	}
	return spans, at, times
}

// Convert derives the spans' names and attributes as the correlator does.
func Convert(spans []*model.Span) []*model.Span {
	for _, s := range spans {
		semconv.Apply(s, nil)
	}
	return spans
}

// Attr is the value of the span's attribute key, "" when it has none.
func Attr(s *model.Span, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}
