package correlate

import (
	"net/netip"
	"slices"

	"github.com/zerotrace/zerotrace/correlate/model"
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
// exchanges of the protocol it carries that await their answer.
type sockStream struct {
	local, remote netip.AddrPort
	unix          bool

	served    []*httpHead // HTTP requests read, awaiting the response written
	sending   *reply      // the response being written, until its end
	requested []*httpHead // HTTP requests written, awaiting the response read
	pg        *pgConn
	redis     *redisConn
	mysql     *mysqlConn
}

// pending is how many exchanges the descriptor holds unanswered.
func (st *sockStream) pending() int {
	n := len(st.served) + len(st.requested)
	if st.pg != nil {
		n += len(st.pg.ops)
	}
	if st.redis != nil {
		n += len(st.redis.cmds)
	}
	if st.mysql != nil && st.mysql.op != nil {
		n++
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
// into spans: HTTP/1.x server and client spans, and PostgreSQL, MySQL and
// Redis client spans.
//
// Within a process, a call made by the thread that is serving exactly one
// request (a thread-per-request server such as Python's
// ThreadingHTTPServer) is a child of that request's span. A thread serving
// several requests at once (an event loop) gives its calls no parent:
// there is no telling which request they belong to.
type kernelTracer struct {
	streams map[sockKey]*sockStream
	serving map[threadKey][]*httpHead
	stats   *Stats
	ids     idSource
	out     []*model.Span // what the record being handled completed
	// recognised, when set, is told of each socket's protocol when it is
	// first seen (and of a TLS server name): the connection table's.
	recognised func(d *SockData, serverName string)
}

func newKernelTracer(stats *Stats, ids idSource) *kernelTracer {
	return &kernelTracer{
		streams: map[sockKey]*sockStream{},
		serving: map[threadKey][]*httpHead{},
		stats:   stats,
		ids:     ids,
	}
}

// handle returns the spans a record completes. The slice is reused by the
// next call.
func (k *kernelTracer) handle(d *SockData) []*model.Span {
	k.out = k.out[:0]
	key := streamKey(d)
	st := k.streams[key]
	if d.Dir == SockClose {
		if st != nil {
			k.closeStream(d, st)
			delete(k.streams, key)
		}
		return k.out
	}
	if d.Proto == ProtoTLS {
		// One record per connection: nothing to keep.
		if k.recognised != nil {
			name, _ := clientHelloServerName(d.Data)
			k.recognised(d, name)
		}
		return k.out
	}
	if st == nil {
		if len(k.streams) >= maxStreams {
			k.stats.KernelStreamsFull.Add(1)
			return k.out
		}
		st = &sockStream{}
		k.streams[key] = st
		if k.recognised != nil {
			k.recognised(d, "")
		}
	}
	if d.Local.IsValid() {
		st.local, st.remote = d.Local, d.Remote
	}
	st.unix = st.unix || d.Unix
	switch d.Proto {
	case ProtoHTTP:
		k.handleHTTP(d, st)
	case ProtoPostgres:
		if st.pg == nil {
			st.pg = &pgConn{}
		}
		k.handlePostgres(d, st)
	case ProtoRedis:
		if st.redis == nil {
			st.redis = &redisConn{}
		}
		k.handleRedis(d, st)
	case ProtoMySQL:
		if st.mysql == nil {
			st.mysql = &mysqlConn{}
		}
		k.handleMySQL(d, st)
	}
	return k.out
}

// closeStream settles a descriptor's exchanges at its close: unanswered
// HTTP requests are counted; a database exchange whose answer was being
// read ends at its last read.
func (k *kernelTracer) closeStream(d *SockData, st *sockStream) {
	if st.sending != nil {
		k.endReply(d.PID, st) // a response framed by the close ends with it
	}
	for _, h := range st.served {
		k.leave(d.PID, h)
	}
	if st.pg != nil {
		k.settlePostgres(st)
	}
	if st.redis != nil {
		k.settleRedis(st)
	}
	if st.mysql != nil {
		k.settleMySQL(st)
	}
	k.stats.KernelUnanswered.Add(uint64(st.pending()))
}

// enter records that h's thread is serving h.
func (k *kernelTracer) enter(pid uint32, h *httpHead) {
	t := threadKey{pid, h.tid}
	k.serving[t] = append(k.serving[t], h)
}

// leave records that h is answered (or given up).
func (k *kernelTracer) leave(pid uint32, h *httpHead) {
	t := threadKey{pid, h.tid}
	list := slices.DeleteFunc(k.serving[t], func(x *httpHead) bool { return x == h })
	if len(list) == 0 {
		delete(k.serving, t)
	} else {
		k.serving[t] = list
	}
}

// childIDs chooses the IDs of a call thread tid of process pid starts now:
// a child of the request the thread serves, if it serves exactly one, else
// the root of a new trace.
func (k *kernelTracer) childIDs(pid, tid uint32) model.SpanIDs {
	if list := k.serving[threadKey{pid, tid}]; len(list) == 1 {
		return model.SpanIDs{TraceID: list[0].ids.TraceID, SpanID: k.ids.newSpanID(), Parent: list[0].ids.SpanID}
	}
	return model.SpanIDs{TraceID: k.ids.newTraceID(), SpanID: k.ids.newSpanID()}
}

// forget drops what is held for process pid, which exited: its
// descriptors closed with it. Responses it was writing end there (their
// spans are returned; the slice is reused by the next call); what its
// descriptors awaited counts as unanswered.
func (k *kernelTracer) forget(pid uint32) []*model.Span {
	k.out = k.out[:0]
	for key, st := range k.streams {
		if key.pid == pid {
			if st.sending != nil {
				k.endReply(pid, st)
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

// clientHelloServerName reads the server_name extension (SNI) of a TLS
// record holding a ClientHello, as far as b goes.
func clientHelloServerName(b []byte) (string, bool) {
	// record header (5), handshake header (4), version (2), random (32)
	const fixed = 5 + 4 + 2 + 32
	if len(b) < fixed+1 || b[0] != 0x16 || b[5] != 1 {
		return "", false
	}
	p := b[fixed:]
	skip := func(lenBytes int) bool {
		if len(p) < lenBytes {
			return false
		}
		n := 0
		for _, c := range p[:lenBytes] {
			n = n<<8 | int(c)
		}
		if len(p) < lenBytes+n {
			return false
		}
		p = p[lenBytes+n:]
		return true
	}
	// session id, cipher suites, compression methods
	if !skip(1) || !skip(2) || !skip(1) || len(p) < 2 {
		return "", false
	}
	p = p[2:] // the extensions' total length: the capture may end first
	for len(p) >= 4 {
		typ, n := int(p[0])<<8|int(p[1]), int(p[2])<<8|int(p[3])
		p = p[4:]
		if typ != 0 { // not server_name
			if len(p) < n {
				return "", false
			}
			p = p[n:]
			continue
		}
		// list length (2), then entries: type (1: 0 = host name), length (2), name
		if n > len(p) || n < 5 || p[2] != 0 {
			return "", false
		}
		size := int(p[3])<<8 | int(p[4])
		if 5+size > n {
			return "", false
		}
		name := string(p[5 : 5+size])
		if !validHostName(name) {
			return "", false
		}
		return name, true
	}
	return "", false
}

// validHostName accepts what a DNS host name may hold.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
