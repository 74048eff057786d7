package correlate

import (
	"slices"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/correlate/protocols/tlshello"
	"go.opentelemetry.io/otel/trace"
)

// sockKey names one socket of one process, or a descriptor that is not a
// socket (fd set, sock 0). A socket read through one descriptor and written
// through another (inetd-style servers read fd 0 and write fd 1) is one
// stream.
type sockKey struct {
	pid  uint32
	fd   int32
	sock uint64
}

func streamKey(d *SockData) sockKey {
	if d.Sock != 0 {
		return sockKey{pid: d.PID, fd: -1, sock: d.Sock}
	}
	return sockKey{pid: d.PID, fd: d.FD}
}

// threadKey names one thread of one process.
type threadKey struct {
	pid, tid uint32
}

// sockStream is what is known of one descriptor: its endpoints, and the
// parser of each protocol it carries (one, but for a descriptor the kernel
// recognised differently over time). It is its parsers' protocols.Env.
type sockStream struct {
	k       *kernelTracer
	pid     uint32
	conn    protocols.Conn
	parsers []streamParser
	first   [1]streamParser // parsers' memory for the usual one
}

// streamParser is the parser of one protocol on a descriptor.
type streamParser struct {
	proto SockProto
	p     protocols.Parser
}

// parser returns the descriptor's parser of proto, made at its first use;
// nil when proto is not one the kernel path parses.
func (st *sockStream) parser(proto SockProto) protocols.Parser {
	for i := range st.parsers {
		if st.parsers[i].proto == proto {
			return st.parsers[i].p
		}
	}
	w, ok := wireProtocols[proto]
	if !ok {
		return nil
	}
	if st.parsers == nil {
		st.parsers = st.first[:0]
	}
	p := w.parse(st)
	st.parsers = append(st.parsers, streamParser{proto, p})
	return p
}

// pending is how many exchanges the descriptor holds unanswered.
func (st *sockStream) pending() int {
	n := 0
	for _, sp := range st.parsers {
		n += sp.p.Pending()
	}
	return n
}

// maxStreams bounds the sockets followed at once. A socket is forgotten at
// its close or its process's exit; a close the probes cannot see (a
// descriptor closed by exec, close_range or dup2) would otherwise keep one
// forever.
const maxStreams = 65536

// maxPending bounds the exchanges a descriptor may hold unanswered: past it
// the oldest is dropped and counted, so a peer that never answers cannot
// make the agent grow.
const maxPending = 64

// idSource chooses trace and span IDs.
type idSource interface {
	newTraceID() trace.TraceID
	newSpanID() trace.SpanID
}

// kernelTracer turns SockData records (processes traced from the kernel)
// into spans. It joins; the parsers of package protocols parse: it keeps
// the descriptors and their parsers, bounds them, and lends each parser
// the IDs and the threads' requests (its protocols.Env).
//
// Within a process, a call made by the thread that is serving exactly one
// request (a thread-per-request server such as Python's
// ThreadingHTTPServer) is a child of that request's span. A thread serving
// several requests at once (an event loop) gives its calls no parent:
// there is no telling which request they belong to.
type kernelTracer struct {
	streams map[sockKey]*sockStream
	// serving holds, per thread, the IDs of the requests it serves, which
	// their parsers own and may still change.
	serving map[threadKey]requests
	stats   *Stats
	ids     idSource
	seg     protocols.Segment // the record being handled, as its parser reads it
	out     []*model.Span     // what the record being handled completed
	ends    []segmentEnd      // segments' last bytes awaiting their record
	// recognised, when set, is told of each socket's protocol when it is
	// first seen (and of a TLS server name): the connection table's.
	recognised func(d *SockData, serverName string)
	// genai configures the model calls its parsers read (nil: defaults).
	genai *genai.Config
}

func newKernelTracer(stats *Stats, ids idSource) *kernelTracer {
	return &kernelTracer{
		streams: map[sockKey]*sockStream{},
		serving: map[threadKey]requests{},
		stats:   stats,
		ids:     ids,
	}
}

// segmentDirs is what each record direction is to a parser.
var segmentDirs = [...]protocols.Dir{
	SockRead:      protocols.Read,
	SockWrite:     protocols.Write,
	SockReadMore:  protocols.ReadMore,
	SockWriteBody: protocols.WriteBody,
	SockWriteMore: protocols.WriteMore,
	SockReadBody:  protocols.ReadBody,
}

// segmentEnd is the last bytes of a model call's read or write, which the
// kernel sends in a record of their own just before the segment's
// (SockReadTail, SockWriteTail): they wait here for it.
type segmentEnd struct {
	key  sockKey
	tid  uint32
	len  uint32
	data []byte // the record's own Data (each record has its own memory)
}

// maxEnds bounds the segment ends waiting: more than one only when
// threads on several CPUs read or write model calls at the same instant.
const maxEnds = 4

// handle returns the spans a record completes. The slice is reused by the
// next call.
func (k *kernelTracer) handle(d *SockData) []*model.Span {
	k.out = k.out[:0]
	key := streamKey(d)
	st := k.streams[key]
	if d.Dir == SockClose {
		if st != nil {
			k.closeStream(st)
			delete(k.streams, key)
		}
		return k.out
	}
	if d.Dir == SockReadTail || d.Dir == SockWriteTail {
		k.keepEnd(key, d)
		return k.out
	}
	if d.Proto == ProtoTLS {
		// One record per connection: nothing to keep.
		if k.recognised != nil {
			name, _ := tlshello.ServerName(d.Data)
			k.recognised(d, name)
		}
		return k.out
	}
	if st == nil {
		if len(k.streams) >= maxStreams {
			k.stats.KernelStreamsFull.Add(1)
			return k.out
		}
		st = &sockStream{k: k, pid: d.PID, conn: protocols.Conn{Source: model.SourceKernel, GenAI: k.genai}}
		k.streams[key] = st
		if k.recognised != nil && !d.TLS {
			// (A TLS connection stays one, with its server name.)
			k.recognised(d, "")
		}
	}
	st.conn.TLS = st.conn.TLS || d.TLS
	if d.Local.IsValid() {
		if d.Remote != st.conn.Remote {
			st.conn.RemoteAddr = d.Remote.Addr().String()
		}
		st.conn.Local, st.conn.Remote = d.Local, d.Remote
	}
	st.conn.Unix = st.conn.Unix || d.Unix
	p := st.parser(d.Proto)
	if p == nil || int(d.Dir) >= len(segmentDirs) || segmentDirs[d.Dir] == 0 {
		return k.out
	}
	k.seg = protocols.Segment{
		Dir: segmentDirs[d.Dir], Time: d.Time, TID: d.TID, Len: d.Len,
		Data: d.Data, Tail: d.Tail, Ready: d.Ready, Partial: d.Partial,
	}
	if len(k.ends) > 0 {
		k.seg.End = k.takeEnd(key, d)
	}
	k.out = p.Feed(k.out, &k.seg)
	for p.Pending() > maxPending {
		p.DropOldest()
		k.stats.KernelUnanswered.Add(1)
	}
	return k.out
}

// keepEnd keeps the last bytes of the segment whose record comes next,
// in place of the oldest kept when there is no room.
func (k *kernelTracer) keepEnd(key sockKey, d *SockData) {
	e := segmentEnd{key: key, tid: d.TID, len: d.Len, data: d.Data}
	if len(k.ends) >= maxEnds {
		copy(k.ends, k.ends[1:])
		k.ends = k.ends[:maxEnds-1]
	}
	k.ends = append(k.ends, e)
}

// takeEnd returns the last bytes kept for d's segment, nil when none
// were; the end of another segment of d's thread and descriptor was not
// followed by its record (lost) and is dropped.
func (k *kernelTracer) takeEnd(key sockKey, d *SockData) []byte {
	for i := range k.ends {
		e := k.ends[i]
		if e.key != key || e.tid != d.TID {
			continue
		}
		k.ends = append(k.ends[:i], k.ends[i+1:]...)
		if e.len == d.Len {
			return e.data
		}
		return nil
	}
	return nil
}

// closeStream settles a descriptor's exchanges at its close: what was
// being answered ends (a response framed by the close, an answer whose
// end was past what the parser could follow), and what is left was never
// answered.
func (k *kernelTracer) closeStream(st *sockStream) {
	for _, sp := range st.parsers {
		k.out = sp.p.Close(k.out)
	}
	k.stats.KernelUnanswered.Add(uint64(st.pending()))
}

// forget drops what is held for process pid, which exited: its
// descriptors closed with it. Responses it was writing end there (their
// spans are returned; the slice is reused by the next call); what its
// descriptors awaited counts as unanswered.
func (k *kernelTracer) forget(pid uint32) []*model.Span {
	k.out = k.out[:0]
	for key, st := range k.streams {
		if key.pid == pid {
			for _, sp := range st.parsers {
				k.out = sp.p.Flush(k.out)
			}
			k.stats.KernelUnanswered.Add(uint64(st.pending()))
			delete(k.streams, key)
		}
	}
	for t := range k.serving {
		if t.pid == pid {
			delete(k.serving, t)
		}
	}
	return k.out
}

// flush ends every response still being written, giving each span with its
// process's PID to yield.
func (k *kernelTracer) flush(yield func(pid uint32, s *model.Span)) {
	for key, st := range k.streams {
		for _, sp := range st.parsers {
			k.out = sp.p.Flush(k.out[:0])
			for _, s := range k.out {
				yield(key.pid, s)
			}
		}
	}
	k.out = k.out[:0]
}

// Conn implements protocols.Env.
func (st *sockStream) Conn() protocols.Conn { return st.conn }

// requests are the IDs of the requests one thread serves: one, mostly (a
// thread-per-request server), which needs no slice.
type requests struct {
	first *model.SpanIDs
	more  []*model.SpanIDs
}

// Serve implements protocols.Env: the request starts a new trace (its
// parser continues a caller's), and its thread serves it.
func (st *sockStream) Serve(tid uint32, ids *model.SpanIDs) {
	*ids = model.SpanIDs{TraceID: st.k.ids.newTraceID(), SpanID: st.k.ids.newSpanID()}
	t := threadKey{st.pid, tid}
	r, ok := st.k.serving[t]
	if !ok {
		r.first = ids
	} else {
		r.more = append(r.more, ids)
	}
	st.k.serving[t] = r
}

// Done implements protocols.Env.
func (st *sockStream) Done(tid uint32, ids *model.SpanIDs) {
	t := threadKey{st.pid, tid}
	r, ok := st.k.serving[t]
	if !ok {
		return
	}
	if r.first == ids {
		if len(r.more) == 0 {
			delete(st.k.serving, t)
			return
		}
		r.first = r.more[0]
		r.more = slices.Delete(r.more, 0, 1)
	} else {
		r.more = slices.DeleteFunc(r.more, func(x *model.SpanIDs) bool { return x == ids })
	}
	st.k.serving[t] = r
}

// Call implements protocols.Env: a child of the request the thread serves,
// if it serves exactly one, else the root of a new trace.
func (st *sockStream) Call(tid uint32) model.SpanIDs {
	k := st.k
	if r, ok := k.serving[threadKey{st.pid, tid}]; ok && len(r.more) == 0 {
		return model.SpanIDs{TraceID: r.first.TraceID, SpanID: k.ids.newSpanID(), Parent: r.first.SpanID}
	}
	return model.SpanIDs{TraceID: k.ids.newTraceID(), SpanID: k.ids.newSpanID()}
}

// Malformed implements protocols.Env.
func (st *sockStream) Malformed() { st.k.stats.KernelMalformed.Add(1) }

// Unanswered implements protocols.Env.
func (st *sockStream) Unanswered() { st.k.stats.KernelUnanswered.Add(1) }
