package correlate

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"go.opentelemetry.io/otel/trace"
)

// SockDir is what a SockData record reports.
type SockDir uint8

// Directions (enum sock_dir in bpf/common/event.h).
const (
	SockRead  SockDir = 1
	SockWrite SockDir = 2
	SockClose SockDir = 3
	// SockReadMore is the read after one that started a request, whatever
	// it holds: the rest of a head that arrived in pieces, or a body.
	SockReadMore SockDir = 4
	// SockWriteBody is a write (or sendfile) after a response head was
	// written: more of its body. Time is when it returned, Len the bytes
	// it sent, Tail its last bytes when it sent all it asked; no Data.
	SockWriteBody SockDir = 5
)

// SockProto is the protocol the kernel recognised on a descriptor.
type SockProto uint8

// Protocols (enum sock_proto in bpf/common/event.h).
const (
	ProtoHTTP     SockProto = 1
	ProtoPostgres SockProto = 2 // client side
	ProtoRedis    SockProto = 3 // client side
	ProtoTLS      SockProto = 4 // a ClientHello, the one record seen of the connection
	ProtoMySQL    SockProto = 5 // MySQL/MariaDB, client side
)

// String names the protocol as connections and the map show it.
func (p SockProto) String() string {
	switch p {
	case ProtoHTTP:
		return "http"
	case ProtoPostgres:
		return "postgresql"
	case ProtoRedis:
		return "redis"
	case ProtoTLS:
		return "tls"
	case ProtoMySQL:
		return "mysql"
	}
	return "tcp"
}

// SockData is the start of a read or write that looks like HTTP/1.x, or a
// read or write of a descriptor that carries a database protocol, made by a
// process traced from the kernel (syscall tracepoints), or the close of a
// descriptor that carried either.
type SockData struct {
	PID, TID uint32
	FD       int32
	// Sock identifies the socket behind FD (0 when FD is not one): the
	// same for every descriptor of it, dup'd or inherited.
	Sock  uint64
	Time  time.Time
	Dir   SockDir
	Proto SockProto
	// Ready: a PostgreSQL read that ends with ReadyForQuery, or a MySQL
	// read that ends with the end of a response.
	Ready bool
	// Partial: Len and Tail cover only part of a vectored write.
	Partial bool
	Len     uint32 // bytes read, or bytes the write asked to send
	Data    []byte // the first bytes, at most 512
	// Tail is the last bytes (at most 8) of an HTTP write: of its last
	// buffer, for writev and sendmsg.
	Tail []byte
	// The descriptor's TCP endpoints, when it is a TCP socket; Unix when
	// it is a Unix-domain socket.
	Local, Remote netip.AddrPort
	Unix          bool
}

// ProcessID implements Event.
func (d *SockData) ProcessID() uint32 { return d.PID }

// httpHead is a parsed request head.
type httpHead struct {
	start                   time.Time
	method, target, version string
	host                    string
	traceparent, tracestate string
	// open is set while the head's end has not been seen; tail is its last,
	// unfinished line, which the next read continues.
	open bool
	tail []byte
	// The span's IDs, chosen when the request is seen so that what the
	// serving thread calls meanwhile can name it as parent; tid is that
	// thread.
	ids model.SpanIDs
	tid uint32
}

// handleHTTP pairs HTTP/1.x requests and responses on one descriptor.
// Requests wait in order: HTTP/1.1 answers pipelined requests in order.
func (k *kernelTracer) handleHTTP(d *SockData, st *sockStream) {
	if d.Dir == SockWriteBody {
		if r := st.sending; r != nil && r.more(d) {
			k.endReply(d.PID, st)
		}
		return
	}
	if d.Dir == SockReadMore {
		if n := len(st.served); n > 0 && st.served[n-1].open {
			h := st.served[n-1]
			data := append(h.tail, d.Data...)
			h.tail = nil
			h.open = false
			h.parseFields(data)
			k.continueTrace(h)
		}
		return
	}
	if bytes.HasPrefix(d.Data, []byte("HTTP/1.")) {
		status, ok := parseStatusLine(d.Data)
		if !ok {
			k.stats.KernelMalformed.Add(1)
			return
		}
		if d.Dir == SockRead {
			// A response read answers the oldest request written. The
			// client span ends with the head, as a Go client's does.
			if len(st.requested) == 0 {
				return // a request from before the agent attached
			}
			req := st.requested[0]
			st.requested = st.requested[1:]
			k.out = append(k.out, kernelSpan(req, status, d.Time, trace.SpanKindClient, st))
			return
		}
		// A response written answers the oldest request read. One still
		// being written ended before this head.
		if st.sending != nil {
			k.endReply(d.PID, st)
		}
		if len(st.served) == 0 || status < 200 && status != 101 {
			// A response to a request from before the agent attached,
			// or an interim one (100 Continue): the final one follows.
			return
		}
		req := st.served[0]
		st.served = st.served[1:]
		r, done := startReply(req, status, d)
		st.sending = r
		if done {
			k.endReply(d.PID, st)
		}
		return
	}
	// One or more request heads (pipelining puts several in one read).
	heads, malformed := parseRequestHeads(d.Data, d.Time)
	if malformed {
		k.stats.KernelMalformed.Add(1)
	}
	for i := range heads {
		h := &heads[i]
		h.tid = d.TID
		if d.Dir == SockWrite {
			h.ids = k.childIDs(d.PID, d.TID)
			if len(st.requested) >= maxPending {
				st.requested = st.requested[1:]
				k.stats.KernelUnanswered.Add(1)
			}
			st.requested = append(st.requested, h)
			continue
		}
		if st.sending != nil {
			// The client asked again: the response before is complete.
			k.endReply(d.PID, st)
		}
		h.ids = model.SpanIDs{TraceID: k.ids.newTraceID(), SpanID: k.ids.newSpanID()}
		k.continueTrace(h)
		if len(st.served) >= maxPending {
			k.leave(d.PID, st.served[0])
			st.served = st.served[1:]
			k.stats.KernelUnanswered.Add(1)
		}
		st.served = append(st.served, h)
		k.enter(d.PID, h)
	}
}

// continueTrace makes a served request's span continue the trace of its
// traceparent, when it carries a valid one.
func (k *kernelTracer) continueTrace(h *httpHead) {
	if tid, parent, ok := parseTraceparent(h.traceparent); ok {
		h.ids.TraceID, h.ids.Parent = tid, parent
	}
}

// parseStatusLine reads the status code of "HTTP/1.x NNN ...".
func parseStatusLine(b []byte) (int, bool) {
	line, _, _ := bytes.Cut(b, []byte("\r\n"))
	if len(line) < 12 || line[8] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || code > 999 || (len(line) > 12 && line[12] != ' ') {
		return 0, false
	}
	return code, true
}

// parseRequestHeads parses the request heads at the start of b, which holds
// the first bytes of a read or write. A head cut off by the capture keeps
// what was seen; bodies are skipped by Content-Length when they fit. It
// reports malformed when the first line is not a request line at all.
func parseRequestHeads(b []byte, at time.Time) (heads []httpHead, malformed bool) {
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, []byte("\r\n"))
		if !found && len(heads) > 0 {
			return heads, false // the next request goes on past the capture
		}
		h, ok := parseRequestLine(line, found)
		if !ok {
			return heads, len(heads) == 0
		}
		h.start = at
		if !found {
			// The request line itself goes on past this read.
			h.open, h.tail = true, nil
			return append(heads, h), false
		}
		var body int
		rest, body, found = h.parseFields(rest)
		heads = append(heads, h)
		if !found || body < 0 && body != -1 || body > len(rest) {
			return heads, false
		}
		if body > 0 {
			rest = rest[body:]
		}
		b = rest
	}
	return heads, false
}

// parseFields reads header lines from b up to the blank line that ends
// the head. It returns what follows the head, the body length (-1 when
// none was given, -2 for chunked) and whether the head ended in b; if not,
// h stays open with its unfinished last line kept for the next read.
func (h *httpHead) parseFields(b []byte) (rest []byte, body int, ended bool) {
	body = -1
	for {
		line, after, found := bytes.Cut(b, []byte("\r\n"))
		if !found {
			h.open, h.tail = true, append([]byte(nil), line...)
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
		v := strings.TrimSpace(string(value))
		switch strings.ToLower(string(name)) {
		case "host":
			h.host = v
		case "traceparent":
			h.traceparent = v
		case "tracestate":
			h.tracestate = v
		case "content-length":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				body = n
			}
		case "transfer-encoding":
			body = -2 // chunked: where it ends is not known here
		}
	}
}

func isToken(c byte) bool { return c >= 'A' && c <= 'Z' }

// parseRequestLine parses "METHOD target HTTP/1.x". A line that is not
// complete (a request sent in pieces, or longer than the capture) is
// taken for what it shows when it has a method and the start of a target.
func parseRequestLine(line []byte, complete bool) (httpHead, bool) {
	parts := bytes.Split(line, []byte(" "))
	if len(parts) < 2 || len(parts) > 3 || len(parts[0]) == 0 || len(parts[0]) > 16 || len(parts[1]) == 0 {
		return httpHead{}, false
	}
	for _, c := range parts[0] {
		if !isToken(c) {
			return httpHead{}, false
		}
	}
	h := httpHead{method: string(parts[0]), target: string(parts[1])}
	if len(parts) == 3 && bytes.HasPrefix(parts[2], []byte("HTTP/1.")) && len(parts[2]) == 8 {
		h.version = string(parts[2][5:])
		return h, true
	}
	if complete {
		return httpHead{}, false
	}
	return h, true
}

// parseTraceparent reads a version-00 W3C traceparent.
func parseTraceparent(v string) (trace.TraceID, trace.SpanID, bool) {
	var tid trace.TraceID
	var sid trace.SpanID
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || v[:2] == "ff" {
		return tid, sid, false
	}
	if _, err := hex.Decode(tid[:], []byte(v[3:35])); err != nil {
		return tid, sid, false
	}
	if _, err := hex.Decode(sid[:], []byte(v[36:52])); err != nil {
		return tid, sid, false
	}
	if strings.ToLower(v) != v || !tid.IsValid() || !sid.IsValid() {
		return tid, sid, false
	}
	return tid, sid, true
}

// kernelSpan builds the span of one request and its response, on the
// descriptor st. A client request that carries a traceparent of its own
// (the program propagates context itself) continues that trace.
func kernelSpan(h *httpHead, status int, end time.Time, kind trace.SpanKind, st *sockStream) *model.Span {
	x := &model.HTTP{
		Method:  h.method,
		Host:    h.host,
		Version: h.version,
		Status:  status,
	}
	target := h.target
	if !strings.HasPrefix(target, "/") {
		// The absolute form a request to a proxy uses.
		if scheme, rest, ok := strings.Cut(target, "://"); ok {
			x.Scheme = scheme
			host, path, _ := strings.Cut(rest, "/")
			if x.Host == "" {
				x.Host = host
			}
			target = "/" + path
		}
	}
	x.Path, x.Query, _ = strings.Cut(target, "?")
	if kind == trace.SpanKindServer {
		// What the kernel sees of a connection is plain text.
		x.Scheme = "http"
		x.Local, x.Peer = st.local, st.remote
	} else {
		x.Peer = st.remote
	}
	s := &model.Span{
		Kind:   kind,
		Start:  h.start,
		End:    end,
		Source: model.SourceKernel,
		HTTP:   x,
	}
	s.SetIDs(h.ids)
	if tid, parent, ok := parseTraceparent(h.traceparent); ok {
		s.TraceState = h.tracestate
		if kind == trace.SpanKindClient {
			s.TraceID, s.ParentSpanID = tid, parent
		}
	}
	return s
}
