// Package mysql follows the client side of a MySQL or MariaDB connection:
// one CLIENT span per query and per prepared-statement execution (its text
// comes from its prepare), ended by the response's last packet, with the
// sanitized text, the database (handshake or COM_INIT_DB), the server's
// version from its greeting, the rows, and the error number and message of
// an error. A connection that switches to TLS is left alone.
package mysql

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
)

// parser is one MySQL or MariaDB client connection. The protocol has no
// pipelining: a client sends one command and reads its whole response
// before the next, so the reader starts afresh at every command written and
// at most one awaits.
type parser struct {
	env      protocols.Env
	version  string // the server's, from its greeting
	database string // from the handshake response or COM_INIT_DB
	stmts    map[uint32]string
	op       *mysqlOp // the command awaited, nil when none; &opMem
	opMem    mysqlOp
	last     protocols.LastStatement

	greeted bool // the server's greeting was read: the handshake response comes next
	tls     bool // the client asked for TLS: nothing more can be read

	// Reading the response: skip is how many bytes of the packet being
	// read are still to come; lost is set when a packet header was past
	// the capture, until a read the probe saw end with the response's last
	// packet (Ready) or the next command.
	skip     int64
	lost     bool
	lastRead time.Time
	phase    mysqlPhase
	left     int64 // packets left in this phase
}

// mysqlPhase is where in a response the reader is.
type mysqlPhase uint8

const (
	mysqlFirst     mysqlPhase = iota // the first packet says what the response is
	mysqlColumns                     // column definitions
	mysqlAfterCols                   // an EOF (the client wants them), a row, or the end
	mysqlRows                        // rows until the end
	mysqlSkip                        // the definitions after a prepare's OK
)

// mysqlOp is one command awaiting its response.
type mysqlOp struct {
	start     time.Time
	ids       model.SpanIDs
	text      string
	truncated bool
	silent    bool // answered, but no span (ping, init db, prepare)
	prepare   bool
	affected  int64
	hasOK     bool
	rows      int64
	resultSet bool
	rowsLost  bool // the reader lost its place: rows is a lower bound
	errCode   string
	errState  string
	errMsg    string
}

// MySQL command bytes and capability flags used here.
const (
	mysqlQuit          = 0x01
	mysqlInitDB        = 0x02
	mysqlQuery         = 0x03
	mysqlStmtPrepare   = 0x16
	mysqlStmtExecute   = 0x17
	mysqlStmtClose     = 0x19
	mysqlConnectWithDB = 1 << 3
	mysqlSSL           = 1 << 11
	mysqlSecureConn    = 1 << 15
	mysqlAuthLenenc    = 1 << 21
	mysqlMoreResults   = 0x0008 // SERVER_MORE_RESULTS_EXISTS
)

// maxStatements bounds the prepared statements remembered per connection.
const maxStatements = 256

// cstr splits a NUL-terminated string off b (protocols.CString).
func cstr(b []byte) (string, []byte, bool) { return protocols.CString(b) }

// New returns the parser of one connection.
func New(env protocols.Env) protocols.Parser { return &parser{env: env} }

// Feed implements protocols.Parser.
func (c *parser) Feed(out []*model.Span, s *protocols.Segment) []*model.Span {
	switch s.Dir {
	case protocols.Write:
		out = c.write(out, s)
	case protocols.Read:
		out = c.read(out, s)
	}
	return out
}

// mysqlPacket splits the packet at the start of b: its sequence number,
// its payload as far as b holds it, and the payload's full length.
func mysqlPacket(b []byte) (seq byte, payload []byte, size int64, ok bool) {
	if len(b) < 4 {
		return 0, nil, 0, false
	}
	size = int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16
	return b[3], b[4:min(int64(len(b)), 4+size)], size, true
}

// lenenc reads a length-encoded integer.
func lenenc(b []byte) (n int64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
	case c < 0xfb:
		return int64(c), b[1:], true
	case c == 0xfc && len(b) >= 3:
		return int64(binary.LittleEndian.Uint16(b[1:])), b[3:], true
	case c == 0xfd && len(b) >= 4:
		return int64(b[1]) | int64(b[2])<<8 | int64(b[3])<<16, b[4:], true
	case c == 0xfe && len(b) >= 9:
		return int64(binary.LittleEndian.Uint64(b[1:]) & (1<<63 - 1)), b[9:], true
	}
	return 0, nil, false
}

// write reads a command (or the handshake response) the client wrote.
func (c *parser) write(out []*model.Span, s *protocols.Segment) []*model.Span {
	seq, p, size, ok := mysqlPacket(s.Data)
	if !ok || len(p) == 0 {
		return out
	}
	if c.tls {
		return out
	}
	if seq != 0 {
		if seq == 1 && c.greeted {
			c.handshake(p, size)
		}
		return out // the rest of the handshake, or of a long packet
	}
	c.greeted = false
	// No pipelining: whatever was awaited has been answered by now.
	out = c.settle(out)
	if c.op != nil {
		c.env.Unanswered() // not a byte of its answer was seen
		c.op = nil
	}
	c.skip, c.lost, c.phase, c.left = 0, false, mysqlFirst, 0
	// The one command awaited lives in opMem: the previous one is done.
	c.opMem = mysqlOp{start: s.Time}
	op := &c.opMem
	text := p[1:]
	cut := int64(len(p)) < size
	switch p[0] {
	case mysqlQuit, mysqlStmtClose:
		return out // no response
	case mysqlQuery:
		// A client that negotiated query attributes (MySQL 8's own
		// connectors) puts their count and set count first: none, one set.
		text = bytes.TrimPrefix(text, []byte("\x00\x01"))
		op.text, op.truncated = c.last.Text(text), cut
	case mysqlStmtPrepare:
		op.text, op.truncated, op.prepare, op.silent = c.last.Text(text), cut, true, true
	case mysqlStmtExecute:
		if len(p) < 5 {
			return out
		}
		op.text = c.stmts[binary.LittleEndian.Uint32(p[1:5])]
	case mysqlInitDB:
		if !cut {
			c.database = string(text)
		}
		op.silent = true
	default:
		op.silent = true // ping, reset, and the like: answered, no span
	}
	if !op.silent {
		op.ids = c.env.Call(s.TID)
	}
	c.op = op
	return out
}

// handshake reads the client's handshake response: its capabilities say
// where the database it connects to is. A 32-byte one asking for SSL is
// followed by TLS, which this reader cannot see into.
func (c *parser) handshake(p []byte, size int64) {
	if len(p) < 32 {
		return
	}
	caps := binary.LittleEndian.Uint32(p)
	if caps&mysqlSSL != 0 && size == 32 {
		c.tls, c.greeted = true, false
		return
	}
	_, rest, ok := cstr(p[32:]) // user name
	if !ok || caps&mysqlConnectWithDB == 0 {
		return
	}
	switch {
	case caps&mysqlAuthLenenc != 0:
		n, r, ok := lenenc(rest)
		if !ok || n > int64(len(r)) {
			return
		}
		rest = r[n:]
	case caps&mysqlSecureConn != 0:
		if len(rest) == 0 || int(rest[0]) >= len(rest) {
			return
		}
		rest = rest[1+int(rest[0]):]
	default:
		if _, rest, ok = cstr(rest); !ok {
			return
		}
	}
	if db, _, ok := cstr(rest); ok && db != "" {
		c.database = db
	}
}

// read reads the server's packets in a read.
func (c *parser) read(out []*model.Span, s *protocols.Segment) []*model.Span {
	c.lastRead = s.Time
	b, total := s.Data, int64(s.Len)
	if c.tls {
		return out
	}
	if c.op == nil {
		// The greeting (which names the server), or what answers the
		// handshake: no command awaits.
		if _, p, _, ok := mysqlPacket(b); ok && len(p) > 1 && p[0] == 0x0a {
			version, _, _ := cstr(p[1:])
			c.version = version
			c.greeted = true
		}
		return out
	}
	if c.lost {
		if s.Ready {
			out = c.done(out, s.Time)
		}
		return out
	}
	if c.skip > total {
		c.skip -= total
		return out
	}
	pos := c.skip
	c.skip = 0
	for pos < total && c.op != nil {
		if pos+5 > int64(len(b)) {
			c.lost, c.op.rowsLost = true, true // the header is past the capture
			break
		}
		_, p, size, _ := mysqlPacket(b[pos:])
		if size > 0 { // an empty packet only ends a 16 MiB one
			out = c.packet(out, s.Time, p, size)
		}
		end := pos + 4 + size
		if end > total {
			c.skip = end - total
			break
		}
		pos = end
	}
	if c.lost && s.Ready {
		out = c.done(out, s.Time)
	}
	return out
}

// packet moves the response reader on by one packet, whose payload starts
// with p and is size bytes long.
func (c *parser) packet(out []*model.Span, at time.Time, p []byte, size int64) []*model.Span {
	op := c.op
	eof := p[0] == 0xfe && size < 9
	switch c.phase {
	case mysqlFirst:
		switch {
		case p[0] == 0x00 && op.prepare:
			// statement id, columns, parameters: their definitions
			// follow, each list closed by an EOF unless the client
			// asked for none (then the first packet after tells).
			if len(p) >= 9 {
				id := binary.LittleEndian.Uint32(p[1:])
				if len(c.stmts) < maxStatements || c.stmts[id] != "" {
					if c.stmts == nil {
						c.stmts = map[uint32]string{}
					}
					c.stmts[id] = op.text
				}
				cols, params := int64(binary.LittleEndian.Uint16(p[5:])), int64(binary.LittleEndian.Uint16(p[7:]))
				if c.left = cols + params; c.left > 0 {
					c.phase = mysqlSkip
					return out
				}
			}
			out = c.done(out, at)
		case p[0] == 0x00:
			op.hasOK = true
			affected, rest, _ := lenenc(p[1:])
			op.affected = affected
			if !mysqlMore(rest) {
				out = c.done(out, at)
			}
		case p[0] == 0xff:
			if len(p) >= 3 {
				op.errCode = strconv.Itoa(int(binary.LittleEndian.Uint16(p[1:])))
				msg := p[3:]
				if len(msg) >= 6 && msg[0] == '#' {
					op.errState, msg = string(msg[1:6]), msg[6:]
				}
				op.errMsg = string(msg)
			} else {
				op.errCode = "error"
			}
			out = c.done(out, at)
		case eof || p[0] == 0xfb:
			out = c.done(out, at)
		default:
			n, _, ok := lenenc(p)
			if !ok || n <= 0 {
				c.lost, op.rowsLost = true, true
				return out
			}
			op.resultSet = true
			c.phase, c.left = mysqlColumns, n
		}
	case mysqlColumns:
		if c.left--; c.left == 0 {
			c.phase = mysqlAfterCols
		}
	case mysqlAfterCols:
		switch {
		case eof && size == 5:
			c.phase = mysqlRows // the EOF that closes the definitions
		case eof:
			out = c.end(out, at, p)
		default:
			op.rows++
			c.phase = mysqlRows
		}
	case mysqlRows:
		switch {
		case eof:
			out = c.end(out, at, p)
		case p[0] == 0xff:
			c.phase = mysqlFirst
			out = c.packet(out, at, p, size)
		default:
			op.rows++
		}
	case mysqlSkip:
		// A prepare's parameter and column definitions, each list
		// closed by an EOF when the client wants them: the last
		// definition ends what matters (a prepare makes no span; an EOF
		// left unread is dropped with the reader's state at the next
		// command).
		if !eof {
			if c.left--; c.left <= 0 {
				out = c.done(out, at)
			}
		}
	}
	return out
}

// end reads the packet that ends a result set (EOF, or OK with the 0xfe
// header): more results may follow.
func (c *parser) end(out []*model.Span, at time.Time, p []byte) []*model.Span {
	var more bool
	if len(p) >= 5 && len(p) < 7 {
		more = binary.LittleEndian.Uint16(p[3:])&mysqlMoreResults != 0 // EOF: warnings, status
	} else {
		_, rest, _ := lenenc(p[1:])
		more = mysqlMore(rest)
	}
	if more {
		c.phase = mysqlFirst
		return out
	}
	return c.done(out, at)
}

// mysqlMore reads an OK packet's status flags after its affected rows:
// the last insert id, then the status. Unreadable flags say no.
func mysqlMore(afterAffected []byte) bool {
	_, rest, ok := lenenc(afterAffected)
	if !ok || len(rest) < 2 {
		return false
	}
	return binary.LittleEndian.Uint16(rest)&mysqlMoreResults != 0
}

// done ends the command awaited: its response is complete.
func (c *parser) done(out []*model.Span, end time.Time) []*model.Span {
	op := c.op
	c.op, c.phase, c.left, c.skip, c.lost = nil, mysqlFirst, 0, 0, false
	if op != nil && !op.silent {
		out = append(out, c.span(op, end))
	}
	return out
}

// settle ends, at its last read, a command whose response was being read
// when the next command (or the close) came: the protocol has no
// pipelining, so it was complete.
func (c *parser) settle(out []*model.Span) []*model.Span {
	if c.op != nil && c.lastRead.After(c.op.start) {
		out = c.done(out, c.lastRead)
	}
	return out
}

// Flush implements protocols.Parser: no response here waits for the
// connection's end.
func (c *parser) Flush(out []*model.Span) []*model.Span { return out }

// Close implements protocols.Parser: a response being read ends at the
// last read.
func (c *parser) Close(out []*model.Span) []*model.Span { return c.settle(out) }

// Pending implements protocols.Parser.
func (c *parser) Pending() int {
	if c.op != nil {
		return 1
	}
	return 0
}

// DropOldest implements protocols.Parser.
func (c *parser) DropOldest() { c.op = nil }

// span builds the CLIENT span of one command.
func (c *parser) span(op *mysqlOp, end time.Time) *model.Span {
	// "mysql" for MariaDB too: what is recognised is the protocol, and a
	// connection from before the agent never shows its greeting, so
	// naming the server from it would split one database in two on the
	// map. The version, when known, says which it is.
	s := protocols.ClientSpan(c.env.Conn(), "mysql", op.ids, op.start, end)
	c.last.SetSQL(s.DB, op.text)
	s.DB.Namespace = c.database
	s.Truncated = op.truncated
	s.DB.ServerVersion = c.version
	switch {
	case op.errCode != "":
		s.Failure = model.Failure{Failed: true, Type: op.errCode, Message: op.errMsg}
		s.DB.StatusCode = op.errCode
	case op.resultSet && !op.rowsLost:
		s.DB.ReturnedRows = op.rows
	case op.hasOK:
		s.DB.RowsAffected = op.affected
	}
	return s
}
