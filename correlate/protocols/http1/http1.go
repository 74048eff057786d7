// Package http1 follows HTTP/1.x on one connection, either side: requests
// read and answered make SERVER spans, requests written and answered make
// CLIENT spans, keep-alive and pipelined requests included (HTTP/1.1
// answers pipelined requests in order).
//
// A server span lasts until the last byte of its response is written: the
// body ends at its Content-Length, at the zero-size chunk of a chunked
// body, or with the connection; a client span ends with the response head,
// as a Go client's does. A served request continues the trace of its
// traceparent when it carries a valid one.
package http1

import (
	"bytes"
	"strings"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"go.opentelemetry.io/otel/trace"
)

// parser is one connection's HTTP/1.x.
type parser struct {
	env       protocols.Env
	served    protocols.Queue[*head] // requests read, awaiting the response written
	requested protocols.Queue[*head] // requests written, awaiting the response read
	sending   reply                  // the response being written, until its end
	// receiving is the answer to a model call this process made, being
	// read until its end (other responses read end with their head).
	receiving reply
	free      []*head // heads done with, for the next requests
	lastHost  string
	freeX     []*genai.Exchange // model-call exchanges done with
	strings   *genai.Strings    // their interned values, once there is a model call
}

// New returns the parser of one connection.
func New(env protocols.Env) protocols.Parser {
	return &parser{env: env}
}

// maxFree bounds the heads kept for reuse.
const maxFree = 4

func (p *parser) newHead() *head {
	if n := len(p.free); n > 0 {
		h := p.free[n-1]
		p.free = p.free[:n-1]
		return h
	}
	return &head{}
}

// recycle keeps h for a later request; nothing may refer to it any more.
func (p *parser) recycle(h *head) {
	if len(p.free) < maxFree {
		h.reset()
		p.free = append(p.free, h)
	}
}

// Feed implements protocols.Parser.
func (p *parser) Feed(out []*model.Span, s *protocols.Segment) []*model.Span {
	switch s.Dir {
	case protocols.WriteBody:
		if p.sending.req != nil && p.sending.more(s) {
			out = p.endReply(out)
		}
		return out
	case protocols.ReadBody:
		if p.receiving.req != nil && (p.receiving.more(s) || p.receiving.req.gx.Done()) {
			out = p.endReceive(out, true)
		}
		return out
	case protocols.WriteMore:
		// The rest of a model call's request body, written.
		if n := p.requested.Len(); n > 0 {
			if h := p.requested.At(n - 1); h.gx != nil && !h.open && h.bodyLeft > 0 {
				h.lastRead = len(s.Data)
				requestBody(h, s.Data, int64(s.Len), 0)
				bodyEnd(h, s)
			}
		}
		return out
	case protocols.ReadMore:
		n := p.served.Len()
		if n == 0 {
			return out
		}
		h := p.served.At(n - 1)
		h.lastRead = len(s.Data)
		if h.open {
			data := append(h.tail, s.Data...)
			h.tail = data[:0]
			h.open = false
			rest, body, ended := parseFields(data, h, p.lastHost)
			p.noteHost(h)
			continueTrace(h)
			if ended && len(rest) <= len(s.Data) {
				requestBody(h, rest, int64(s.Len)-int64(len(s.Data)-len(rest)), body)
				bodyEnd(h, s)
			}
		} else if h.gx != nil && h.bodyLeft > 0 {
			// The rest of a model call's request body.
			requestBody(h, s.Data, int64(s.Len), 0)
			bodyEnd(h, s)
		}
		return out
	}
	if bytes.HasPrefix(s.Data, []byte("HTTP/1.")) {
		return p.response(out, s)
	}
	if p.bodyOfCall(s) {
		// A feeder that sees every byte (TLS plaintext) gives a model
		// call's body as plain reads and writes.
		body := *s
		body.Dir = protocols.ReadBody
		if s.Dir == protocols.Write {
			body.Dir = protocols.WriteMore
		}
		return p.Feed(out, &body)
	}
	return p.requests(out, s)
}

// bodyOfCall says whether s, a read or write that is not a response head,
// continues a model call this process makes: its answer's body being read,
// or its request's body being written.
func (p *parser) bodyOfCall(s *protocols.Segment) bool {
	switch s.Dir {
	case protocols.Read:
		return p.receiving.req != nil
	case protocols.Write:
		n := p.requested.Len()
		if n == 0 {
			return false
		}
		h := p.requested.At(n - 1)
		return h.gx != nil && !h.open && h.bodyLeft > 0
	}
	return false
}

// response pairs a response head with the oldest request it answers.
func (p *parser) response(out []*model.Span, s *protocols.Segment) []*model.Span {
	status, ok := parseStatusLine(s.Data)
	if !ok {
		p.env.Malformed()
		return out
	}
	if s.Dir == protocols.Read {
		// A response read answers the oldest request written. The
		// client span ends with the head, as a Go client's does.
		if p.receiving.req != nil {
			out = p.endReceive(out, false)
		}
		if p.requested.Len() == 0 {
			return out // a request from before the agent attached
		}
		if status < 200 && status != 101 && p.requested.At(0).gx != nil {
			return out // an interim answer to a model call: the final one follows
		}
		req := p.requested.Pop()
		if req.gx != nil {
			// A model call's answer is read to its end: the stream's
			// last event, or its framing's, or the close.
			if p.receiving.start(req, status, s) || req.gx.Done() {
				out = p.endReceive(out, true)
			}
			return out
		}
		out = append(out, p.span(req, status, s.Time, trace.SpanKindClient))
		p.recycle(req)
		return out
	}
	// A response written answers the oldest request read. One still
	// being written ended before this head.
	if p.sending.req != nil {
		out = p.endReply(out)
	}
	if p.served.Len() == 0 || status < 200 && status != 101 {
		// A response to a request from before the agent attached, or an
		// interim one (100 Continue): the final one follows.
		return out
	}
	if p.sending.start(p.served.Pop(), status, s) {
		out = p.endReply(out)
	}
	return out
}

// requests reads the request heads at the start of a read or write (one,
// or more when pipelined). A head cut off by the capture keeps what was
// seen; bodies are skipped by Content-Length when they fit.
func (p *parser) requests(out []*model.Span, s *protocols.Segment) []*model.Span {
	b := s.Data
	first := true
	for len(b) > 0 {
		line, rest, found := bytes.Cut(b, crlf)
		if !found && !first {
			break // the next request goes on past the capture
		}
		h := p.newHead()
		if !parseRequestLine(line, found, h) {
			p.recycle(h)
			if first {
				p.env.Malformed() // not a request line at all
			}
			break
		}
		first = false
		h.start = s.Time
		body := 0
		if !found {
			// The request line itself goes on past this read.
			h.open = true
		} else {
			p.startGenAI(h)
			h.lastRead = len(s.Data)
			rest, body, found = parseFields(rest, h, p.lastHost)
			p.noteHost(h)
			if found && h.gx != nil {
				requestBody(h, rest, int64(s.Len)-int64(len(s.Data)-len(rest)), body)
				bodyEnd(h, s)
			}
		}
		out = p.request(out, h, s)
		if !found || body < 0 && body != bodyUnknown || body > len(rest) {
			break
		}
		if body > 0 {
			rest = rest[body:]
		}
		b = rest
	}
	return out
}

// request queues a request head seen in s.
func (p *parser) request(out []*model.Span, h *head, s *protocols.Segment) []*model.Span {
	h.tid = s.TID
	if s.Dir == protocols.Write {
		if p.receiving.req != nil {
			// Asked again: the answer before ended, where it was
			// last read.
			out = p.endReceive(out, false)
		}
		h.ids = p.env.Call(s.TID)
		p.requested.Push(h)
		return out
	}
	if p.sending.req != nil {
		// The client asked again: the response before is complete.
		out = p.endReply(out)
	}
	p.env.Serve(s.TID, &h.ids)
	continueTrace(h)
	p.served.Push(h)
	return out
}

// noteHost remembers h's Host for the next request's.
func (p *parser) noteHost(h *head) {
	if h.host != "" {
		p.lastHost = h.host
	}
}

// continueTrace makes a served request's span continue the trace of its
// traceparent, when it carries a valid one.
func continueTrace(h *head) {
	if h.parent {
		h.ids.TraceID, h.ids.Parent = h.traceID, h.spanID
	}
}

// endReply completes the response being written: its span ends with its
// last write, and its thread is done serving it.
func (p *parser) endReply(out []*model.Span) []*model.Span {
	r := p.sending
	p.sending = reply{}
	p.env.Done(r.req.tid, &r.req.ids)
	span := p.span(r.req, r.status, r.last, trace.SpanKindServer)
	if r.req.gx != nil {
		r.finishTail()
		r.req.respLost = r.dc.lost && !r.req.gx.Done()
		end := model.GenAIEndFraming
		if r.framing == framedClose {
			end = model.GenAIEndClosed
		}
		p.finishGenAI(span, r.req, end)
	}
	out = append(out, span)
	p.recycle(r.req)
	return out
}

// endReceive completes the answer to a model call being read: its span
// ends with the read that brought its end, or the last one seen when the
// answer stopped before (framed is false: the connection closed, or the
// process exited or asked again).
func (p *parser) endReceive(out []*model.Span, framed bool) []*model.Span {
	r := p.receiving
	p.receiving = reply{}
	span := p.span(r.req, r.status, r.last, trace.SpanKindClient)
	r.finishTail()
	r.req.respLost = r.dc.lost && !r.req.gx.Done()
	end := model.GenAIEndFraming
	if !framed || r.framing == framedClose {
		end = model.GenAIEndClosed
	}
	p.finishGenAI(span, r.req, end)
	out = append(out, span)
	p.recycle(r.req)
	return out
}

// Flush implements protocols.Parser: a response being written ends with
// its last write, one being read with its last read.
func (p *parser) Flush(out []*model.Span) []*model.Span {
	if p.sending.req != nil {
		out = p.endReply(out)
	}
	if p.receiving.req != nil {
		out = p.endReceive(out, false)
	}
	return out
}

// Close implements protocols.Parser: a response framed by the close ends
// with it; requests read and not answered are given up.
func (p *parser) Close(out []*model.Span) []*model.Span {
	out = p.Flush(out)
	for i := range p.served.Len() {
		h := p.served.At(i)
		p.env.Done(h.tid, &h.ids)
	}
	return out
}

// Pending implements protocols.Parser.
func (p *parser) Pending() int { return p.served.Len() + p.requested.Len() }

// DropOldest implements protocols.Parser.
func (p *parser) DropOldest() {
	switch {
	case p.served.Len() > 0 && (p.requested.Len() == 0 || !p.requested.At(0).start.Before(p.served.At(0).start)):
		h := p.served.Pop()
		p.env.Done(h.tid, &h.ids)
		p.recycle(h)
	case p.requested.Len() > 0:
		h := p.requested.Pop()
		if h.gx != nil {
			p.dropGenAI(h)
		}
		p.recycle(h)
	}
}

// span builds the span of one request and its response. A client request
// that carries a traceparent of its own (the program propagates context
// itself) continues that trace.
func (p *parser) span(h *head, status int, end time.Time, kind trace.SpanKind) *model.Span {
	conn := p.env.Conn()
	s := model.NewSpan()
	x := s.UseHTTP()
	x.Method, x.Host, x.Version, x.Status = h.method, h.host, h.version, status
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
		x.Scheme = "http"
		if conn.TLS {
			x.Scheme = "https"
		}
		x.Local, x.Peer = conn.Local, conn.Remote
	} else {
		x.Peer = conn.Remote
		if conn.TLS && x.Scheme == "" {
			x.Scheme = "https"
		}
	}
	s.Kind = kind
	s.Start, s.End = h.start, end
	s.Source = conn.Source
	s.SetIDs(h.ids)
	if h.parent {
		s.TraceState = h.tracestate
		if kind == trace.SpanKindClient {
			s.TraceID, s.ParentSpanID = h.traceID, h.spanID
		}
	}
	return s
}
