package correlate

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"go.opentelemetry.io/otel/trace"
)

// pgConn is a PostgreSQL client connection of a process traced from the
// kernel: what its startup said, and its queries awaiting the server's
// ReadyForQuery, which ends each simple query and each extended-protocol
// batch (up to a Sync) in order.
type pgConn struct {
	database string
	stmts    map[string]pgStatement // by prepared statement name
	ops      []*pgOp

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
	tag       string // CommandComplete: "SELECT 3", "INSERT 0 1", …
	errCode   string // SQLSTATE of an ErrorResponse
	errMsg    string
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

// cstr splits a NUL-terminated string off b.
func cstr(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), nil, false
	}
	return string(b[:i]), b[i+1:], true
}

func (k *kernelTracer) handlePostgres(d *SockData, st *sockStream) {
	switch d.Dir {
	case SockWrite:
		k.pgWrite(d, st)
	case SockRead:
		k.pgRead(d, st)
	}
}

// pgWrite reads the client's messages in a write.
func (k *kernelTracer) pgWrite(d *SockData, st *sockStream) {
	c := st.pg
	if c.tls {
		return
	}
	b, total := d.Data, int64(d.Len)
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
			k.stats.KernelMalformed.Add(1)
			return
		}
		end := pos + 1 + n
		complete := end <= int64(len(b))
		body := b[pos+5 : min(end, int64(len(b)))]
		switch t {
		case 'Q':
			text, _, _ := cstr(body)
			k.pgStart(d, st, &pgOp{text: text, truncated: !complete})
		case 'P':
			c.batchOpen = true
			name, rest, _ := cstr(body)
			text, _, ok := cstr(rest)
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
			k.pgSync(d, st)
		}
		pos = end
	}
	if pos < total && c.batchOpen {
		// The write goes on past the capture: a batch is written whole
		// with its Sync (libpq does), which this one must hold.
		c.batchExec = true
		k.pgSync(d, st)
	}
}

// startup reads the parameters of a StartupMessage.
func (c *pgConn) startup(b []byte) {
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

// pgSync ends the batch being written.
func (k *kernelTracer) pgSync(d *SockData, st *sockStream) {
	c := st.pg
	op := &pgOp{text: c.batchText, truncated: c.batchCut, silent: !c.batchExec}
	c.batchOpen, c.batchText, c.batchCut, c.batchExec = false, "", false, false
	k.pgStart(d, st, op)
}

// pgStart queues an operation sent now.
func (k *kernelTracer) pgStart(d *SockData, st *sockStream, op *pgOp) {
	c := st.pg
	op.start = d.Time
	if !op.silent {
		op.ids = k.childIDs(d.PID, d.TID)
	}
	if len(c.ops) >= maxPending {
		c.ops = c.ops[1:]
		k.stats.KernelUnanswered.Add(1)
	}
	c.ops = append(c.ops, op)
}

// pgRead reads the server's messages in a read.
func (k *kernelTracer) pgRead(d *SockData, st *sockStream) {
	c := st.pg
	c.lastRead = d.Time
	b, total := d.Data, int64(d.Len)
	if c.sslAsked {
		// 'N': go on in the clear; 'S' or 'G': encrypted from here on,
		// which this reader cannot see into.
		c.sslAsked = false
		c.tls = len(b) > 0 && b[0] != 'N'
		if total == 1 {
			return
		}
		if len(b) > 0 {
			b = b[1:]
		}
		total--
	}
	if c.tls {
		return
	}
	if c.lost {
		if d.Ready {
			c.lost, c.skip = false, 0
			k.pgDone(d.Time, st)
		}
		return
	}
	if c.skip >= total {
		c.skip -= total
		return
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
		if len(c.ops) > 0 {
			op = c.ops[0]
		}
		switch t {
		case 'C':
			if op != nil {
				op.tag, _, _ = cstr(body)
			}
		case 'E':
			if op != nil && op.errCode == "" {
				op.errCode, op.errMsg = pgError(body)
			}
		case 'Z':
			k.pgDone(d.Time, st)
		}
		if end > total {
			c.skip = end - total
			break
		}
		pos = end
	}
	if c.lost && d.Ready {
		c.lost = false
		k.pgDone(d.Time, st)
	}
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

// pgDone ends the oldest operation: the server sent ReadyForQuery.
func (k *kernelTracer) pgDone(end time.Time, st *sockStream) {
	c := st.pg
	if len(c.ops) == 0 {
		return // the startup's, or an answer to what came before the agent
	}
	op := c.ops[0]
	c.ops = c.ops[1:]
	if !op.silent {
		k.out = append(k.out, pgSpan(op, c, st, end))
	}
}

// settlePostgres ends, at a close, an operation whose answer was being
// read past a missed boundary.
func (k *kernelTracer) settlePostgres(st *sockStream) {
	if c := st.pg; c.lost && len(c.ops) > 0 && c.lastRead.After(c.ops[0].start) {
		k.pgDone(c.lastRead, st)
	}
}

// pgSpan builds the CLIENT span of one operation.
func pgSpan(op *pgOp, c *pgConn, st *sockStream, end time.Time) *model.Span {
	s := kernelSQLSpan("postgresql", op.text, op.truncated, c.database, op.ids, op.start, end, st)
	if verb, count, ok := strings.Cut(op.tag, " "); ok {
		// "SELECT n", "INSERT oid n", "UPDATE n": the count is last.
		if i := strings.LastIndexByte(count, ' '); i >= 0 {
			count = count[i+1:]
		}
		if n, err := strconv.ParseInt(count, 10, 64); err == nil {
			if verb == "SELECT" {
				s.DB.ReturnedRows = n
			} else {
				s.DB.RowsAffected = n
			}
		}
	}
	if op.errCode != "" {
		s.Failure = model.Failure{Failed: true, Type: op.errCode, Message: op.errMsg}
		s.DB.StatusCode = op.errCode
	}
	return s
}

// kernelSQLSpan starts the CLIENT span of one SQL exchange seen from the
// kernel on socket st: the sanitized statement, its times and IDs, the
// database, the server's address and whether the text was cut.
func kernelSQLSpan(system, text string, truncated bool, database string, ids model.SpanIDs, start, end time.Time, st *sockStream) *model.Span {
	d := semconv.SQL(system, text)
	d.Namespace = database
	setPeer(d, st)
	s := &model.Span{
		Kind:      trace.SpanKindClient,
		Start:     start,
		End:       end,
		Source:    model.SourceKernel,
		Truncated: truncated,
		DB:        d,
	}
	s.SetIDs(ids)
	return s
}

// setPeer sets the server's address, as the connection's endpoints give it,
// on a database exchange.
func setPeer(d *model.DB, st *sockStream) {
	switch {
	case st.remote.IsValid():
		d.ServerAddress, d.ServerPort = st.remote.Addr().String(), int(st.remote.Port())
		d.Peer = st.remote
		d.Transport = "tcp"
	case st.unix:
		d.Transport = "unix"
	}
}
