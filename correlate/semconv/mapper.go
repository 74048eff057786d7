package semconv

import (
	"net/netip"
	"strconv"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/redact"
)

// Mapper is Apply for the correlator's hot path: it remembers what it
// computed for values that come back request after request (the same
// paths, query strings, hosts, statements and peers), so that a span whose
// values were seen recently costs map lookups instead of redaction scans
// and string building. Redaction is a pure function of the value and the
// configuration, so a remembered result is exactly what a new scan would
// give. Each memory is bounded: when full it is emptied and refilled.
//
// A Mapper is not safe for concurrent use; the correlator owns one.
type Mapper struct {
	r      *redact.Redactor
	text   memo // redact.String
	url    memo // redact.URL
	query  memo // redact.URLQuery
	ips    map[netip.Addr]string
	names  map[[2]string]string
	hits   uint64
	misses uint64
}

// memoSize bounds each memory: a few hundred KB at most, for the
// thousands of distinct values a service's routes, hosts and statements
// take, while values that never repeat (IDs in paths) only churn it.
const memoSize = 4096

type memo map[string]string

// NewMapper returns a Mapper redacting with r (nil: the built-in
// defaults).
func NewMapper(r *redact.Redactor) *Mapper {
	return &Mapper{
		r:     r,
		text:  memo{},
		url:   memo{},
		query: memo{},
		ips:   map[netip.Addr]string{},
		names: map[[2]string]string{},
	}
}

// Apply is semconv.Apply with the Mapper's memories.
func (m *Mapper) Apply(s *model.Span) { apply(s, m) }

// Hits and Misses count the lookups of the redaction memories.
func (m *Mapper) Hits() uint64   { return m.hits }
func (m *Mapper) Misses() uint64 { return m.misses }

func (m *Mapper) lookup(c memo, s string, f func(string) string) string {
	if s == "" {
		return ""
	}
	if v, ok := c[s]; ok {
		m.hits++
		return v
	}
	m.misses++
	v := f(s)
	if len(c) >= memoSize {
		clear(c)
	}
	// The key is kept: a copy, so that it never pins (or, for a producer
	// that reuses its buffers, aliases) the span's own memory.
	k := string([]byte(s))
	if v == s {
		v = k
	}
	c[k] = v
	return v
}

func (m *Mapper) String(s string) string   { return m.lookup(m.text, s, m.r.String) }
func (m *Mapper) URL(s string) string      { return m.lookup(m.url, s, m.r.URL) }
func (m *Mapper) URLQuery(s string) string { return m.lookup(m.query, s, m.r.URLQuery) }
func (m *Mapper) once(s string) string     { return m.r.String(s) }

func (m *Mapper) addr(a netip.Addr) string {
	if v, ok := m.ips[a]; ok {
		return v
	}
	v := a.String()
	if len(m.ips) >= memoSize {
		clear(m.ips)
	}
	m.ips[a] = v
	return v
}

func (m *Mapper) join(a, b string) string {
	k := [2]string{a, b}
	if v, ok := m.names[k]; ok {
		return v
	}
	v := a + " " + b
	if len(m.names) >= memoSize {
		clear(m.names)
	}
	m.names[[2]string{string([]byte(a)), string([]byte(b))}] = v
	return v
}

// texts is what apply needs to redact and format: the plain Redactor for
// one-off calls (Apply), the Mapper on the hot path.
type texts interface {
	String(string) string
	URL(string) string
	URLQuery(string) string
	addr(netip.Addr) string
	join(a, b string) string
	// once redacts a value that will not come back (a prompt, an
	// answer): without remembering it, which would hold kilobytes of
	// text per entry for nothing.
	once(string) string
}

// plain adapts a Redactor to texts without remembering anything.
type plain struct{ r *redact.Redactor }

func (p plain) String(s string) string   { return p.r.String(s) }
func (p plain) URL(s string) string      { return p.r.URL(s) }
func (p plain) URLQuery(s string) string { return p.r.URLQuery(s) }
func (plain) addr(a netip.Addr) string   { return a.String() }
func (plain) join(a, b string) string    { return a + " " + b }
func (p plain) once(s string) string     { return p.r.String(s) }

// statusText is error.type for the status codes a response can have,
// formatted once.
var statusText = func() (t [1000]string) {
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusString(code int) string {
	if code >= 100 && code < len(statusText) {
		return statusText[code]
	}
	return strconv.Itoa(code)
}
