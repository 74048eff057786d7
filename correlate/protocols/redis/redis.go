// Package redis follows the client side of a RESP connection (Redis,
// Valkey): one CLIENT span per command, pipelined ones included, answered
// in order. The arguments, which may be keys or values of anything, never
// leave the parser: the query text shows the command and one '?' per
// argument.
package redis

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
)

// parser is one RESP client connection: its commands awaiting their reply.
type parser struct {
	env  protocols.Env
	cmds protocols.Queue[*redisCmd]
	free []*redisCmd // commands answered, for the next ones
	db   string      // the database index a SELECT chose

	// Reading replies: need is how many elements the reply being read
	// still lacks (arrays add theirs), skip how many bytes of a bulk
	// string are still to come. lost is set when a boundary was missed
	// (a line past the capture); the command being answered then ends at
	// the last read before the next command is written.
	need, skip int64
	replyErr   bool
	errType    string
	errMsg     string
	lost       bool
	lostAt     time.Time // the read that lost the boundary
	lastRead   time.Time

	// The last query text made, for the next span of the same command.
	lastName, lastQuery string
	lastArgs            int
}

// redisCmd is one command written.
type redisCmd struct {
	start time.Time
	name  string
	args  int // arguments after the name
	ids   model.SpanIDs
}

// maxRedisName bounds a command name; longer means the data is not RESP.
const maxRedisName = 32

// maxBulk is the largest bulk string Redis accepts (proto-max-bulk-len can
// raise it, not past this): a larger size means the data is not RESP.
const maxBulk = 1 << 32

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

// write reads the commands in a write: arrays of bulk strings.
func (c *parser) write(out []*model.Span, s *protocols.Segment) []*model.Span {
	if c.lost {
		out = c.settle(out)
	}
	b := s.Data
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, crlf)
		if !ok || len(line) < 2 || line[0] != '*' {
			return out // past the capture, or not a command
		}
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < 1 {
			c.env.Malformed()
			return out
		}
		cmd := c.newCmd()
		cmd.start, cmd.args, cmd.ids = s.Time, n-1, c.env.Call(s.TID)
		b = rest
		// The name, and SELECT's index, as far as the capture shows them.
		var first [2][]byte
		seen := 0
		cut := false // the capture ends inside the command
		for i := 0; i < n; i++ {
			line, rest, ok := bytes.Cut(b, crlf)
			if !ok {
				b, cut = nil, true
				break
			}
			if len(line) < 2 || line[0] != '$' {
				c.env.Malformed()
				return out
			}
			size, err := strconv.Atoi(string(line[1:]))
			if err != nil || size < 0 || size > maxBulk {
				c.env.Malformed()
				return out
			}
			if i < 2 && size <= len(rest) {
				first[seen] = rest[:size]
				seen++
			}
			if size+2 > len(rest) {
				b, cut = nil, true
				break
			}
			b = rest[size+2:]
		}
		if seen == 0 && cut {
			return out // the name is past the capture
		}
		if seen == 0 || !redisName(first[0]) {
			c.env.Malformed()
			return out
		}
		cmd.name = commandName(first[0])
		if cmd.name == "SELECT" && seen == 2 {
			if _, err := strconv.Atoi(string(first[1])); err == nil {
				c.db = string(first[1])
			}
		}
		c.cmds.Push(cmd)
	}
	return out
}

var crlf = []byte("\r\n")

// redisName says whether s can be a command name: letters, digits and the
// separators of module commands (JSON.GET, FT.SEARCH).
func redisName(s []byte) bool {
	if len(s) == 0 || len(s) > maxRedisName {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '|') {
			return false
		}
	}
	return true
}

// commandName upper-cases a command name (ASCII, as redisName checked),
// without allocating for the usual commands.
func commandName(s []byte) string {
	var up [maxRedisName]byte
	for i, c := range s {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	name := up[:len(s)]
	switch string(name) {
	case "GET":
		return "GET"
	case "SET":
		return "SET"
	case "DEL":
		return "DEL"
	case "INCR":
		return "INCR"
	case "EXPIRE":
		return "EXPIRE"
	case "HGET":
		return "HGET"
	case "HSET":
		return "HSET"
	case "MGET":
		return "MGET"
	case "PING":
		return "PING"
	case "SELECT":
		return "SELECT"
	}
	return string(name)
}

// read reads the replies in a read.
func (c *parser) read(out []*model.Span, s *protocols.Segment) []*model.Span {
	c.lastRead = s.Time
	if c.lost {
		return out
	}
	b, total := s.Data, int64(s.Len)
	if c.skip > total {
		c.skip -= total
		return out
	}
	pos := c.skip
	if c.skip > 0 {
		c.skip = 0
		out = c.element(out, s.Time)
	}
	for pos < total {
		if pos >= int64(len(b)) {
			c.lostAt, c.lost = s.Time, true
			return out
		}
		i := bytes.Index(b[pos:], crlf)
		if i < 0 {
			c.lostAt, c.lost = s.Time, true
			return out
		}
		if i == 0 {
			c.lostAt, c.lost = s.Time, true // an empty line is no reply
			return out
		}
		t, line := b[pos], b[pos+1:pos+int64(i)]
		pos += int64(i) + 2
		if c.need == 0 {
			// A new reply; an error one says so in its first byte.
			c.need, c.replyErr, c.errType, c.errMsg = 1, t == '-' || t == '!', "", ""
			if t == '-' {
				c.errMsg = string(line)
				c.errType, _, _ = strings.Cut(c.errMsg, " ")
			}
		}
		switch t {
		case '+', '-', ':', '_', ',', '#', '(':
			out = c.element(out, s.Time)
		case '$', '!', '=':
			size, err := strconv.ParseInt(string(line), 10, 64)
			if err != nil || size > maxBulk {
				c.lostAt, c.lost = s.Time, true
				return out
			}
			if size < 0 {
				out = c.element(out, s.Time)
				continue
			}
			end := pos + size + 2
			if t == '!' && c.errMsg == "" && pos < int64(len(b)) {
				c.errMsg = string(b[pos:min(pos+size, int64(len(b)))])
				c.errType, _, _ = strings.Cut(c.errMsg, " ")
			}
			if end > total {
				c.skip = end - total
				return out
			}
			pos = end
			out = c.element(out, s.Time)
		case '*', '~', '>', '%':
			n, err := strconv.ParseInt(string(line), 10, 64)
			if err != nil {
				c.lostAt, c.lost = s.Time, true
				return out
			}
			if t == '%' {
				n *= 2
			}
			if n > 0 {
				c.need += n
			}
			out = c.element(out, s.Time)
		default:
			c.lostAt, c.lost = s.Time, true
			return out
		}
	}
	return out
}

// element counts one element of the reply being read, and ends the oldest
// command when that completes the reply.
func (c *parser) element(out []*model.Span, end time.Time) []*model.Span {
	if c.need--; c.need > 0 {
		return out
	}
	c.need = 0
	if c.cmds.Len() == 0 {
		return out // a push message, or the answer to a command from before the agent
	}
	cmd := c.cmds.Pop()
	out = append(out, c.span(cmd, end))
	c.recycle(cmd)
	return out
}

// maxFree bounds the commands kept for reuse.
const maxFree = 4

func (c *parser) newCmd() *redisCmd {
	if n := len(c.free); n > 0 {
		cmd := c.free[n-1]
		c.free = c.free[:n-1]
		return cmd
	}
	return &redisCmd{}
}

// recycle keeps cmd for a later command.
func (c *parser) recycle(cmd *redisCmd) {
	if len(c.free) < maxFree {
		*cmd = redisCmd{}
		c.free = append(c.free, cmd)
	}
}

// queryText is the text a command's span shows: its name and one '?' per
// argument (at most 64), the previous span's when it is the same.
func (c *parser) queryText(cmd *redisCmd) string {
	args := min(cmd.args, 64)
	if cmd.name != c.lastName || args != c.lastArgs || c.lastQuery == "" {
		c.lastName, c.lastArgs = cmd.name, args
		c.lastQuery = cmd.name + strings.Repeat(" ?", args)
	}
	return c.lastQuery
}

// settle ends, after a missed boundary, every command written before the
// read that lost it, at the last read: their replies were in what could
// not be followed. The reader starts afresh with the next command.
func (c *parser) settle(out []*model.Span) []*model.Span {
	if c.lost {
		for c.cmds.Len() > 0 && !c.cmds.At(0).start.After(c.lostAt) && c.lastRead.After(c.cmds.At(0).start) {
			c.need = 1
			out = c.element(out, c.lastRead)
		}
	}
	c.need, c.skip, c.lost = 0, 0, false
	return out
}

// Flush implements protocols.Parser: no reply here waits for the
// connection's end.
func (c *parser) Flush(out []*model.Span) []*model.Span { return out }

// Close implements protocols.Parser: commands whose replies were in what
// the reader could not follow end at the last read.
func (c *parser) Close(out []*model.Span) []*model.Span { return c.settle(out) }

// Pending implements protocols.Parser.
func (c *parser) Pending() int { return c.cmds.Len() }

// DropOldest implements protocols.Parser.
func (c *parser) DropOldest() { c.recycle(c.cmds.Pop()) }

// span builds the CLIENT span of one command.
func (c *parser) span(cmd *redisCmd, end time.Time) *model.Span {
	s := protocols.ClientSpan(c.env.Conn(), "redis", cmd.ids, cmd.start, end)
	s.DB.Operation = cmd.name
	s.DB.Query = c.queryText(cmd)
	s.DB.Namespace = c.db
	if c.replyErr {
		s.Failure = model.Failure{Failed: true, Type: c.errType, Message: c.errMsg}
	}
	return s
}
