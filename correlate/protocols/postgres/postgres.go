// Package postgres follows the client side of a PostgreSQL connection (the
// frontend/backend protocol, version 3): one CLIENT span per simple query
// and per extended-protocol batch, ended by the server's ReadyForQuery,
// with the sanitized text, the database the startup named, the rows the
// command tag counts, and the SQLSTATE and message of an error.
package postgres

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
)

// parser is a PostgreSQL client connection: what its startup said, and its
// queries awaiting the server's ReadyForQuery, which ends each simple query
// and each extended-protocol batch (up to a Sync) in order.
type parser struct {
	env      protocols.Env
	database string
	stmts    map[string]pgStatement // by prepared statement name
	ops      protocols.Queue[*pgOp]
	free     []*pgOp // operations answered, for the next ones
	last     protocols.LastStatement

	// The extended-protocol batch being written: the text of its last
	// Parse or Bind, and whether it has an Execute.
	batchOpen bool
	batchText string
	batchCut  bool
	batchExec bool

	// Reading the server's messages: skip is how many bytes of the
	// message being read are still to come; lost is set when a message
	// boundary was missed (a header past the capture), until a read that
	// ends with ReadyForQuery puts the reader back on one.
	skip     int64
	lost     bool
	lastRead time.Time
	// sslAsked: the client asked for encryption; the server's one-byte
	// answer comes next. tls: it said yes, and what follows is TLS.
	sslAsked, tls bool
}

// pgOp is one query, or one batch up to a Sync.
type pgOp struct {
	start     time.Time
	text      string
	truncated bool
	silent    bool // a Sync with no Execute: answered, but no span
	ids       model.SpanIDs
	// The rows counted by the last CommandComplete's tag ("SELECT 3",
	// "INSERT 0 1", …): returned by a SELECT, else affected; rowsKnown
	// when its count could be read.
	rows                int64
	rowsKnown, returned bool
	errCode             string // SQLSTATE of an ErrorResponse
	errMsg              string
}

// pgStatement is a prepared statement's text; cut when the capture ended
// inside it.
type pgStatement struct {
	text string
	cut  bool
}

// maxStatements bounds the prepared statements remembered per connection.
const maxStatements = 256

// Protocol codes of PostgreSQL's untyped first messages.
const (
	pgProtocol3     = 3 // major version, in the code's high 16 bits
	pgCancel        = 80877102
	pgSSLRequest    = 80877103
	pgGSSENCRequest = 80877104
)

func pgInt(b []byte) int64 { return int64(binary.BigEndian.Uint32(b)) }

// cstr splits a NUL-terminated string off b (protocols.CString).
func cstr(b []byte) (string, []byte, bool) { return protocols.CString(b) }

// cbytes is cstr without the copy.
func cbytes(b []byte) ([]byte, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil, false
	}
	return b[:i], b[i+1:], true
}

// New returns the parser of one connection.
func New(env protocols.Env) protocols.Parser { return &parser{env: env} }

// Feed implements protocols.Parser.
func (c *parser) Feed(out []*model.Span, s *protocols.Segment) []*model.Span {
	switch s.Dir {
	case protocols.Write:
		c.write(s)
	case protocols.Read:
		out = c.read(out, s)
	}
	return out
}

// write reads the client's messages in a write.
func (c *parser) write(s *protocols.Segment) {
	if c.tls {
		return
	}
	b, total := s.Data, int64(s.Len)
	if len(b) >= 8 && pgInt(b) == total {
		switch code := pgInt(b[4:]); {
		case code>>16 == pgProtocol3:
			c.startup(b[8:])
			return
		case code == pgSSLRequest, code == pgGSSENCRequest:
			c.sslAsked = true
			return
		case code == pgCancel:
			return
		}
	}
	pos := int64(0)
	for pos+5 <= int64(len(b)) {
		t, n := b[pos], pgInt(b[pos+1:])
		if n < 4 {
			c.env.Malformed()
			return
		}
		end := pos + 1 + n
		complete := end <= int64(len(b))
		body := b[pos+5 : min(end, int64(len(b)))]
		switch t {
		case 'Q':
			b, _, _ := cbytes(body)
			text := c.last.Text(b)
			op := c.newOp()
			op.text, op.truncated = text, !complete
			c.start(s, op)
		case 'P':
			c.batchOpen = true
			name, rest, _ := cstr(body)
			b, _, ok := cbytes(rest)
			text := c.last.Text(b)
			c.batchText, c.batchCut = text, !ok
			if _, known := c.stmts[name]; known || len(c.stmts) < maxStatements {
				if c.stmts == nil {
					c.stmts = map[string]pgStatement{}
				}
				// A text cut by the capture is kept as such: the
				// statement's previous text is no longer its own.
				c.stmts[name] = pgStatement{text: text, cut: !ok}
			}
		case 'B':
			c.batchOpen = true
			_, rest, _ := cstr(body)
			if stmt, _, ok := cstr(rest); ok {
				if p, known := c.stmts[stmt]; known {
					c.batchText, c.batchCut = p.text, p.cut
				}
			}
		case 'E':
			c.batchOpen, c.batchExec = true, true
		case 'S':
			c.sync(s)
		}
		pos = end
	}
	if pos < total && c.batchOpen {
		// The write goes on past the capture: a batch is written whole
		// with its Sync (libpq does), which this one must hold.
		c.batchExec = true
		c.sync(s)
	}
}

// startup reads the parameters of a StartupMessage.
func (c *parser) startup(b []byte) {
	for len(b) > 0 {
		name, rest, ok := cstr(b)
		if !ok || name == "" {
			return
		}
		value, rest, ok := cstr(rest)
		if !ok {
			return
		}
		if name == "database" {
			c.database = value
		}
		b = rest
	}
}

// sync ends the batch being written.
func (c *parser) sync(s *protocols.Segment) {
	op := c.newOp()
	op.text, op.truncated, op.silent = c.batchText, c.batchCut, !c.batchExec
	c.batchOpen, c.batchText, c.batchCut, c.batchExec = false, "", false, false
	c.start(s, op)
}

// start queues an operation sent now.
func (c *parser) start(s *protocols.Segment, op *pgOp) {
	op.start = s.Time
	if !op.silent {
		op.ids = c.env.Call(s.TID)
	}
	c.ops.Push(op)
}

// read reads the server's messages in a read.
func (c *parser) read(out []*model.Span, s *protocols.Segment) []*model.Span {
	c.lastRead = s.Time
	b, total := s.Data, int64(s.Len)
	if c.sslAsked {
		// 'N': go on in the clear; 'S' or 'G': encrypted from here on,
		// which this reader cannot see into.
		c.sslAsked = false
		c.tls = len(b) > 0 && b[0] != 'N'
		if total == 1 {
			return out
		}
		if len(b) > 0 {
			b = b[1:]
		}
		total--
	}
	if c.tls {
		return out
	}
	if c.lost {
		if s.Ready {
			c.lost, c.skip = false, 0
			out = c.done(out, s.Time)
		}
		return out
	}
	if c.skip >= total {
		c.skip -= total
		return out
	}
	pos := c.skip
	c.skip = 0
	for pos < total {
		if pos+5 > int64(len(b)) {
			c.lost = true
			break
		}
		t, n := b[pos], pgInt(b[pos+1:])
		if n < 4 {
			c.lost = true
			break
		}
		end := pos + 1 + n
		body := b[pos+5 : min(end, int64(len(b)))]
		var op *pgOp
		if c.ops.Len() > 0 {
			op = c.ops.At(0)
		}
		switch t {
		case 'C':
			if op != nil {
				op.tagRows(body)
			}
		case 'E':
			if op != nil && op.errCode == "" {
				op.errCode, op.errMsg = pgError(body)
			}
		case 'Z':
			out = c.done(out, s.Time)
		}
		if end > total {
			c.skip = end - total
			break
		}
		pos = end
	}
	if c.lost && s.Ready {
		c.lost = false
		out = c.done(out, s.Time)
	}
	return out
}

// tagRows reads the row count of a CommandComplete's tag: "SELECT n",
// "INSERT oid n", "UPDATE n", … (the count is last).
func (op *pgOp) tagRows(body []byte) {
	tag := body
	if i := bytes.IndexByte(tag, 0); i >= 0 {
		tag = tag[:i]
	}
	op.rowsKnown = false
	sp := bytes.IndexByte(tag, ' ')
	if sp < 0 {
		return
	}
	verb, count := tag[:sp], tag[sp+1:]
	if i := bytes.LastIndexByte(count, ' '); i >= 0 {
		count = count[i+1:]
	}
	n, err := strconv.ParseInt(string(count), 10, 64)
	if err != nil {
		return
	}
	op.rows, op.rowsKnown, op.returned = n, true, string(verb) == "SELECT"
}

// pgError reads the SQLSTATE and message of an ErrorResponse.
func pgError(b []byte) (code, msg string) {
	for len(b) > 0 && b[0] != 0 {
		field := b[0]
		value, rest, _ := cstr(b[1:])
		switch field {
		case 'C':
			code = value
		case 'M':
			msg = value
		}
		b = rest
	}
	if code == "" {
		code = "error"
	}
	return code, msg
}

// done ends the oldest operation: the server sent ReadyForQuery.
func (c *parser) done(out []*model.Span, end time.Time) []*model.Span {
	if c.ops.Len() == 0 {
		return out // the startup's, or an answer to what came before the agent
	}
	op := c.ops.Pop()
	if !op.silent {
		out = append(out, c.span(op, end))
	}
	c.recycle(op)
	return out
}

// maxFree bounds the operations kept for reuse.
const maxFree = 4

func (c *parser) newOp() *pgOp {
	if n := len(c.free); n > 0 {
		op := c.free[n-1]
		c.free = c.free[:n-1]
		return op
	}
	return &pgOp{}
}

// recycle keeps op for a later operation.
func (c *parser) recycle(op *pgOp) {
	if len(c.free) < maxFree {
		*op = pgOp{}
		c.free = append(c.free, op)
	}
}

// Flush implements protocols.Parser: no answer here waits for the
// connection's end.
func (c *parser) Flush(out []*model.Span) []*model.Span { return out }

// Close implements protocols.Parser: an operation whose answer was being
// read past a missed boundary ends at the last read.
func (c *parser) Close(out []*model.Span) []*model.Span {
	if c.lost && c.ops.Len() > 0 && c.lastRead.After(c.ops.At(0).start) {
		out = c.done(out, c.lastRead)
	}
	return out
}

// Pending implements protocols.Parser.
func (c *parser) Pending() int { return c.ops.Len() }

// DropOldest implements protocols.Parser.
func (c *parser) DropOldest() { c.recycle(c.ops.Pop()) }

// span builds the CLIENT span of one operation.
func (c *parser) span(op *pgOp, end time.Time) *model.Span {
	s := protocols.ClientSpan(c.env.Conn(), "postgresql", op.ids, op.start, end)
	c.last.SetSQL(s.DB, op.text)
	s.DB.Namespace = c.database
	s.Truncated = op.truncated
	if op.rowsKnown {
		if op.returned {
			s.DB.ReturnedRows = op.rows
		} else {
			s.DB.RowsAffected = op.rows
		}
	}
	if op.errCode != "" {
		s.Failure = model.Failure{Failed: true, Type: op.errCode, Message: op.errMsg}
		s.DB.StatusCode = op.errCode
	}
	return s
}
