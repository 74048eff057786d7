package correlate

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"go.opentelemetry.io/otel/trace"
)

// redisConn is a RESP client connection (Redis, Valkey) of a process traced
// from the kernel: its commands awaiting their reply, answered in order.
type redisConn struct {
	cmds []*redisCmd
	db   string // the database index a SELECT chose

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

func (k *kernelTracer) handleRedis(d *SockData, st *sockStream) {
	switch d.Dir {
	case SockWrite:
		k.redisWrite(d, st)
	case SockRead:
		k.redisRead(d, st)
	}
}

// redisWrite reads the commands in a write: arrays of bulk strings.
func (k *kernelTracer) redisWrite(d *SockData, st *sockStream) {
	c := st.redis
	if c.lost {
		k.settleRedis(st)
	}
	b := d.Data
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok || len(line) < 2 || line[0] != '*' {
			return // past the capture, or not a command
		}
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < 1 {
			k.stats.KernelMalformed.Add(1)
			return
		}
		cmd := &redisCmd{start: d.Time, args: n - 1, ids: k.childIDs(d.PID, d.TID)}
		b = rest
		var first []string // the name, and SELECT's index
		cut := false       // the capture ends inside the command
		for i := 0; i < n; i++ {
			line, rest, ok := bytes.Cut(b, []byte("\r\n"))
			if !ok {
				b, cut = nil, true
				break
			}
			if len(line) < 2 || line[0] != '$' {
				k.stats.KernelMalformed.Add(1)
				return
			}
			size, err := strconv.Atoi(string(line[1:]))
			if err != nil || size < 0 || size > maxBulk {
				k.stats.KernelMalformed.Add(1)
				return
			}
			if i < 2 && size <= len(rest) {
				first = append(first, string(rest[:size]))
			}
			if size+2 > len(rest) {
				b, cut = nil, true
				break
			}
			b = rest[size+2:]
		}
		if len(first) == 0 && cut {
			return // the name is past the capture
		}
		if len(first) == 0 || !redisName(first[0]) {
			k.stats.KernelMalformed.Add(1)
			return
		}
		cmd.name = strings.ToUpper(first[0])
		if cmd.name == "SELECT" && len(first) == 2 {
			if _, err := strconv.Atoi(first[1]); err == nil {
				c.db = first[1]
			}
		}
		if len(c.cmds) >= maxPending {
			c.cmds = c.cmds[1:]
			k.stats.KernelUnanswered.Add(1)
		}
		c.cmds = append(c.cmds, cmd)
	}
}

// redisName says whether s can be a command name: letters, digits and the
// separators of module commands (JSON.GET, FT.SEARCH).
func redisName(s string) bool {
	if s == "" || len(s) > maxRedisName {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '|') {
			return false
		}
	}
	return true
}

// redisRead reads the replies in a read.
func (k *kernelTracer) redisRead(d *SockData, st *sockStream) {
	c := st.redis
	c.lastRead = d.Time
	if c.lost {
		return
	}
	b, total := d.Data, int64(d.Len)
	if c.skip > total {
		c.skip -= total
		return
	}
	pos := c.skip
	if c.skip > 0 {
		c.skip = 0
		k.redisElement(d.Time, st)
	}
	for pos < total {
		if pos >= int64(len(b)) {
			c.lostAt, c.lost = d.Time, true
			return
		}
		i := bytes.Index(b[pos:], []byte("\r\n"))
		if i < 0 {
			c.lostAt, c.lost = d.Time, true
			return
		}
		if i == 0 {
			c.lostAt, c.lost = d.Time, true // an empty line is no reply
			return
		}
		t, line := b[pos], string(b[pos+1:pos+int64(i)])
		pos += int64(i) + 2
		if c.need == 0 {
			// A new reply; an error one says so in its first byte.
			c.need, c.replyErr, c.errType, c.errMsg = 1, t == '-' || t == '!', "", ""
			if t == '-' {
				c.errMsg = line
				c.errType, _, _ = strings.Cut(line, " ")
			}
		}
		switch t {
		case '+', '-', ':', '_', ',', '#', '(':
			k.redisElement(d.Time, st)
		case '$', '!', '=':
			size, err := strconv.ParseInt(line, 10, 64)
			if err != nil || size > maxBulk {
				c.lostAt, c.lost = d.Time, true
				return
			}
			if size < 0 {
				k.redisElement(d.Time, st)
				continue
			}
			end := pos + size + 2
			if t == '!' && c.errMsg == "" && pos < int64(len(b)) {
				c.errMsg = string(b[pos:min(pos+size, int64(len(b)))])
				c.errType, _, _ = strings.Cut(c.errMsg, " ")
			}
			if end > total {
				c.skip = end - total
				return
			}
			pos = end
			k.redisElement(d.Time, st)
		case '*', '~', '>', '%':
			n, err := strconv.ParseInt(line, 10, 64)
			if err != nil {
				c.lostAt, c.lost = d.Time, true
				return
			}
			if t == '%' {
				n *= 2
			}
			if n > 0 {
				c.need += n
			}
			k.redisElement(d.Time, st)
		default:
			c.lostAt, c.lost = d.Time, true
			return
		}
	}
}

// redisElement counts one element of the reply being read, and ends the
// oldest command when that completes the reply.
func (k *kernelTracer) redisElement(end time.Time, st *sockStream) {
	c := st.redis
	if c.need--; c.need > 0 {
		return
	}
	c.need = 0
	if len(c.cmds) == 0 {
		return // a push message, or the answer to a command from before the agent
	}
	cmd := c.cmds[0]
	c.cmds = c.cmds[1:]
	k.out = append(k.out, redisSpan(cmd, c, st, end))
}

// settleRedis ends, after a missed boundary, every command written before
// the read that lost it, at the last read: their replies were in what could
// not be followed. The reader starts afresh with the next command.
func (k *kernelTracer) settleRedis(st *sockStream) {
	c := st.redis
	if c.lost {
		for len(c.cmds) > 0 && !c.cmds[0].start.After(c.lostAt) && c.lastRead.After(c.cmds[0].start) {
			c.need = 1
			k.redisElement(c.lastRead, st)
		}
	}
	c.need, c.skip, c.lost = 0, 0, false
}

// redisSpan builds the CLIENT span of one command. The arguments, which
// may be keys or values of anything, never leave the agent: the query
// text shows the command and one '?' per argument.
func redisSpan(cmd *redisCmd, c *redisConn, st *sockStream, end time.Time) *model.Span {
	d := model.NewDB("redis")
	d.Operation = cmd.name
	d.Query = cmd.name + strings.Repeat(" ?", min(cmd.args, 64))
	d.Namespace = c.db
	setPeer(d, st)
	s := &model.Span{
		Kind:   trace.SpanKindClient,
		Start:  cmd.start,
		End:    end,
		Source: model.SourceKernel,
		DB:     d,
	}
	s.SetIDs(cmd.ids)
	if c.replyErr {
		s.Failure = model.Failure{Failed: true, Type: c.errType, Message: c.errMsg}
	}
	return s
}
