package model

import (
	"sync"
	"sync/atomic"
)

// Spans are recycled: at tens of thousands of spans a second, allocating
// each span, its exchange and its attributes anew makes the garbage
// collector the agent's largest cost. A producer takes a span with NewSpan
// and its exchange with UseHTTP or UseDB (and UseGenAI); the fan-out to the
// sinks (export.Fanout) holds it once per sink and each sink releases it
// when its export returned. A span nobody releases is simply collected.
//
// What may be kept after Release: the strings a span held (they are never
// rewritten), but not the span, its exchange or its Attributes slice.

// pooled is a span with room for its exchange, so that one object is all a
// span costs.
type pooled struct {
	Span
	http  HTTP
	db    DB
	genai GenAI
}

var spans = sync.Pool{New: func() any {
	p := &pooled{}
	p.Span.own = p
	return p
}}

// NewSpan returns an empty span from the pool.
func NewSpan() *Span {
	return &spans.Get().(*pooled).Span
}

// UseHTTP sets the span's exchange to an empty HTTP exchange held in the
// span itself, and returns it.
func (s *Span) UseHTTP() *HTTP {
	if s.own == nil || &s.own.Span != s {
		s.HTTP = &HTTP{}
		return s.HTTP
	}
	s.own.http = HTTP{}
	s.HTTP = &s.own.http
	return s.HTTP
}

// UseDB sets the span's exchange to a DB exchange of the given system with
// its counts unknown, held in the span itself, and returns it.
func (s *Span) UseDB(system string) *DB {
	if s.own == nil || &s.own.Span != s {
		s.DB = NewDB(system)
		return s.DB
	}
	s.own.db = DB{System: system, ReturnedRows: -1, RowsAffected: -1}
	s.DB = &s.own.db
	return s.DB
}

// UseGenAI sets the span's GenAI exchange, which refines its HTTP one, to
// an empty one (every count unknown) held in the span itself, and returns
// it.
func (s *Span) UseGenAI() *GenAI {
	if s.own == nil || &s.own.Span != s {
		s.GenAI = NewGenAI()
		return s.GenAI
	}
	s.own.genai.Reset()
	s.GenAI = &s.own.genai
	return s.GenAI
}

// Hold records that n more holders will each call Release once.
func (s *Span) Hold(n int32) { atomic.AddInt32(&s.refs, n) }

// Release gives up one hold; the last one returns a pooled span to the
// pool. A span from NewSpan that was never held is returned at once.
func (s *Span) Release() {
	// A copy of a pooled span (own copied along) is not the pooled span.
	if atomic.AddInt32(&s.refs, -1) > 0 || s.own == nil || &s.own.Span != s {
		return
	}
	p := s.own
	attrs := s.Attributes[:0]
	clear(attrs[:cap(attrs)]) // drop the strings the attributes pinned
	p.Span = Span{own: p, Attributes: attrs}
	p.http, p.db, p.genai = HTTP{}, DB{}, GenAI{}
	spans.Put(p)
}
