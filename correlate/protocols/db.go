package protocols

import (
	"bytes"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"go.opentelemetry.io/otel/trace"
)

// ClientSpan returns the CLIENT span of one call to a database of the given
// system on connection c, with its times and IDs, and its exchange (its
// counts unknown) naming the server as c shows it: the caller fills in the
// rest of s.DB.
func ClientSpan(c Conn, system string, ids model.SpanIDs, start, end time.Time) *model.Span {
	s := model.NewSpan()
	d := s.UseDB(system)
	switch {
	case c.Remote.IsValid():
		d.ServerAddress, d.ServerPort = c.remoteAddr(), int(c.Remote.Port())
		d.Peer = c.Remote
		d.Transport = "tcp"
	case c.Unix:
		d.Transport = "unix"
	}
	s.Kind = trace.SpanKindClient
	s.Start, s.End = start, end
	s.Source = c.Source
	s.SetIDs(ids)
	return s
}

// CString splits a NUL-terminated string off b: the string, what follows
// its NUL, and whether there was one (if not, the string is all of b).
func CString(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// LastStatement remembers the last SQL text a connection's span showed and
// what semconv made of it. Clients repeat their statements (a pooled
// connection runs the same few queries over and over), and sanitizing the
// text is most of what a query costs the parser; a repeated text then
// costs neither a copy nor a sanitizing.
type LastStatement struct {
	text, query, operation, collection string
	set                                bool
}

// Text returns b as a string: the last statement's own when it is the
// same.
func (l *LastStatement) Text(b []byte) string {
	if l.set && string(b) == l.text {
		return l.text
	}
	return string(b)
}

// SetSQL sets d's statement from text as semconv.SetSQL does, reusing the
// last statement's when text is the same, and remembers it.
func (l *LastStatement) SetSQL(d *model.DB, text string) {
	if !l.set || text != l.text {
		var x model.DB
		semconv.SetSQL(&x, text)
		l.text, l.query, l.operation, l.collection, l.set = text, x.Query, x.Operation, x.Collection, true
	}
	d.Query, d.Operation, d.Collection = l.query, l.operation, l.collection
}
