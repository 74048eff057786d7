package correlate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// sockCapture is how many bytes of a read or write the BPF side copies
// (SOCK_DATA_MAX). Every record these tests build is cut to it, with Len
// still the full size, because that is all the parser ever gets to see.
const sockCapture = 512

// wire plays one descriptor of a traced process: each call makes the
// record the kernel would send for one read, write or close, one
// millisecond after the previous one, and hands it to the tracer.
type wire struct {
	k     *kernelTracer
	pid   uint32
	tid   uint32
	fd    int32
	proto SockProto
	clock *int      // shared by the wires of one test, so times are ordered across them
	last  time.Time // when the latest record was made
}

var (
	dbServer = netip.MustParseAddrPort("10.0.0.5:5432")
	dbClient = netip.MustParseAddrPort("10.0.0.9:41000")
)

func newWire(k *kernelTracer, proto SockProto, fd int32, clock *int) *wire {
	return &wire{k: k, pid: 7, tid: 100, fd: fd, proto: proto, clock: clock}
}

// record builds what the probe emits for a read or write of full: Data
// is at most the first 512 bytes, Len the whole size, and a PostgreSQL
// read is flagged Ready exactly when its last six bytes are a
// ReadyForQuery, which is the test the probe makes on the user buffer.
func (w *wire) record(dir SockDir, full []byte) *SockData {
	*w.clock++
	w.last = time.Unix(2000, 0).Add(time.Duration(*w.clock) * time.Millisecond)
	d := &SockData{
		PID: w.pid, TID: w.tid, FD: w.fd, Time: w.last, Dir: dir, Proto: w.proto,
		Len:   uint32(len(full)),
		Data:  bytes.Clone(full[:min(len(full), sockCapture)]),
		Local: dbClient, Remote: dbServer,
	}
	if dir == SockRead && w.proto == ProtoPostgres {
		d.Ready = endsWithReady(full)
	}
	return d
}

func endsWithReady(b []byte) bool {
	n := len(b)
	return n >= 6 && b[n-6] == 'Z' && bytes.Equal(b[n-5:n-1], []byte{0, 0, 0, 5})
}

// send hands d to the tracer and copies what it returns: the tracer
// reuses its result slice on the next call.
func (w *wire) send(d *SockData) []*model.Span { return conv(slices.Clone(w.k.handle(d))) }

func (w *wire) write(b []byte) []*model.Span { return w.send(w.record(SockWrite, b)) }
func (w *wire) read(b []byte) []*model.Span  { return w.send(w.record(SockRead, b)) }
func (w *wire) close() []*model.Span {
	*w.clock++
	w.last = time.Unix(2000, 0).Add(time.Duration(*w.clock) * time.Millisecond)
	return w.send(&SockData{PID: w.pid, TID: w.tid, FD: w.fd, Time: w.last, Dir: SockClose})
}

// readChunks delivers b as a series of reads of at most size bytes, the
// way a client with a buffer of that size would receive it. It returns
// every span, the index of the read that completed each, and the time
// of each read.
func (w *wire) readChunks(b []byte, size int) (spans []*model.Span, at []int, times []time.Time) {
	for i := 0; len(b) > 0; i++ {
		n := min(size, len(b))
		for _, s := range w.read(b[:n]) {
			spans, at = append(spans, s), append(at, i)
		}
		times = append(times, w.last)
		b = b[n:]
	}
	return spans, at, times
}

// stream is what the tracer holds for the descriptor. The records carry
// no socket identity, so the descriptor alone names it.
func (w *wire) stream() *sockStream { return w.k.streams[sockKey{pid: w.pid, fd: w.fd}] }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// --- PostgreSQL v3 wire messages -------------------------------------

func be16(n int) []byte  { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
func be32(n int) []byte  { return binary.BigEndian.AppendUint32(nil, uint32(n)) }
func cz(s string) []byte { return append([]byte(s), 0) }

// pgMsg is a typed message: its type byte, then a length that counts
// itself and the body but not the type.
func pgMsg(typ byte, body ...[]byte) []byte {
	b := cat(body...)
	return cat([]byte{typ}, be32(4+len(b)), b)
}

// pgStartup is a StartupMessage: no type byte, the length, protocol 3.0
// (196608), then name/value pairs ended by an empty name.
func pgStartup(params ...string) []byte {
	body := be32(196608)
	for _, p := range params {
		body = append(body, cz(p)...)
	}
	body = append(body, 0)
	return cat(be32(4+len(body)), body)
}

func pgSSLRequestMsg() []byte       { return cat(be32(8), be32(80877103)) }
func pgQuery(q string) []byte       { return pgMsg('Q', cz(q)) }
func pgParse(name, q string) []byte { return pgMsg('P', cz(name), cz(q), be16(0)) }

// pgBind binds stmt to portal with the given text parameters.
func pgBind(portal, stmt string, params ...string) []byte {
	body := cat(cz(portal), cz(stmt), be16(0), be16(len(params)))
	for _, p := range params {
		body = cat(body, be32(len(p)), []byte(p))
	}
	return pgMsg('B', body, be16(0))
}

func pgDescribe(kind byte, name string) []byte { return pgMsg('D', []byte{kind}, cz(name)) }
func pgExecute(portal string) []byte           { return pgMsg('E', cz(portal), be32(0)) }
func pgSyncMsg() []byte                        { return pgMsg('S') }

// Backend messages.
func pgAuthOK() []byte                 { return pgMsg('R', be32(0)) }
func pgParamStatus(k, v string) []byte { return pgMsg('S', cz(k), cz(v)) }
func pgKeyData() []byte                { return pgMsg('K', be32(4242), be32(99)) }
func pgReady() []byte                  { return pgMsg('Z', []byte{'I'}) }
func pgParseComplete() []byte          { return pgMsg('1') }
func pgBindComplete() []byte           { return pgMsg('2') }
func pgComplete(tag string) []byte     { return pgMsg('C', cz(tag)) }

// pgServerHello is what a server answers a StartupMessage with when it
// trusts the client: it ends with a ReadyForQuery that no query awaits.
func pgServerHello() []byte {
	return cat(pgAuthOK(), pgParamStatus("server_version", "16.2"), pgKeyData(), pgReady())
}

// pgRowDesc describes text columns.
func pgRowDesc(cols ...string) []byte {
	body := be16(len(cols))
	for _, c := range cols {
		body = cat(body, cz(c), be32(0), be16(0), be32(25), be16(-1), be32(-1), be16(0))
	}
	return pgMsg('T', body)
}

func pgDataRow(vals ...string) []byte {
	body := be16(len(vals))
	for _, v := range vals {
		body = cat(body, be32(len(v)), []byte(v))
	}
	return pgMsg('D', body)
}

func pgErrorResp(code, msg string) []byte {
	return pgMsg('E', []byte{'S'}, cz("ERROR"), []byte{'V'}, cz("ERROR"), []byte{'C'}, cz(code), []byte{'M'}, cz(msg), []byte{0})
}

// pgRows is a whole answer to a SELECT of n one-column rows of value v.
func pgRows(n int, v string) []byte {
	b := pgRowDesc("v")
	for range n {
		b = append(b, pgDataRow(v)...)
	}
	return cat(b, pgComplete("SELECT "+strconv.Itoa(n)), pgReady())
}

// --- RESP ---------------------------------------------------------------

// respCmd is a command as clients send it: an array of bulk strings.
func respCmd(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

func respBulk(s string) []byte { return []byte("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n") }

// --- checks ---------------------------------------------------------------

func wantAttrs(t *testing.T, s *model.Span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := attr(s, k); got != v {
			t.Errorf("span %q: %s = %q, want %q", s.Name, k, got, v)
		}
	}
}

func wantNames(t *testing.T, spans []*model.Span, names ...string) {
	t.Helper()
	var got []string
	for _, s := range spans {
		got = append(got, s.Name)
	}
	if !slices.Equal(got, names) {
		t.Fatalf("spans %q, want %q", got, names)
	}
}

// ===== PostgreSQL ========================================================

func TestKernelPGStartupAndSimpleQuery(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	if s := w.write(pgStartup("user", "app", "database", "shop", "application_name", "psql")); len(s) != 0 {
		t.Fatalf("startup made spans: %v", s)
	}
	// The server's answer to the startup ends with a ReadyForQuery that
	// no query awaits: it must not make a span.
	if s := w.read(pgServerHello()); len(s) != 0 {
		t.Fatalf("server hello made spans: %v", s)
	}
	w.write(pgQuery("SELECT id, name FROM items WHERE price > 10 AND name = 'x'"))
	start := w.last
	spans := w.read(cat(pgRowDesc("id", "name"), pgDataRow("1", "a"), pgDataRow("2", "b"), pgDataRow("3", "c"),
		pgComplete("SELECT 3"), pgReady()))
	wantNames(t, spans, "SELECT items")
	s := spans[0]
	if s.Kind != trace.SpanKindClient || !s.Start.Equal(start) || !s.End.Equal(w.last) || s.Status != codes.Unset {
		t.Errorf("kind %v start %v end %v status %v", s.Kind, s.Start, s.End, s.Status)
	}
	wantAttrs(t, s, map[string]string{
		"db.system.name":             "postgresql",
		"db.query.text":              "SELECT id, name FROM items WHERE price > ? AND name = ?",
		"db.operation.name":          "SELECT",
		"db.collection.name":         "items",
		"db.namespace":               "shop",
		"db.response.returned_rows":  "3",
		"zerotrace.db.rows_affected": "",
		"zerotrace.source":           "kernel",
		"zerotrace.truncated":        "",
		"server.address":             "10.0.0.5",
		"server.port":                "5432",
		"network.transport":          "tcp",
	})
	if !s.TraceID.IsValid() || !s.SpanID.IsValid() || s.ParentSpanID.IsValid() {
		t.Errorf("ids %s %s parent %s", s.TraceID, s.SpanID, s.ParentSpanID)
	}

	// An INSERT's tag "INSERT oid rows" counts rows affected, not returned.
	w.write(pgQuery("INSERT INTO items (name) VALUES ('secret')"))
	spans = w.read(cat(pgComplete("INSERT 0 1"), pgReady()))
	wantNames(t, spans, "INSERT items")
	wantAttrs(t, spans[0], map[string]string{
		"zerotrace.db.rows_affected": "1",
		"db.response.returned_rows":  "",
		"db.query.text":              "INSERT INTO items (name) VALUES (?)",
	})
	w.write(pgQuery("UPDATE items SET price = 0"))
	spans = w.read(cat(pgComplete("UPDATE 12"), pgReady()))
	wantNames(t, spans, "UPDATE items")
	wantAttrs(t, spans[0], map[string]string{"zerotrace.db.rows_affected": "12"})
	if p := w.stream().pending(); p != 0 {
		t.Errorf("pending = %d after every query was answered", p)
	}
}

func TestKernelPGSSLRequest(t *testing.T) {
	stats := &Stats{}
	k := newKernelTracer(stats, &seqIDs{})
	var clock int
	// Refused: the server's single 'N' says "go on in the clear", and
	// what follows is ordinary protocol.
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(pgSSLRequestMsg())
	if s := w.read([]byte("N")); len(s) != 0 {
		t.Fatalf("the SSL answer made spans: %v", s)
	}
	w.write(pgStartup("user", "app", "database", "inventory"))
	w.read(pgServerHello())
	w.write(pgQuery("SELECT count(*) FROM stock"))
	spans := w.read(pgRows(1, "42"))
	wantNames(t, spans, "SELECT stock")
	wantAttrs(t, spans[0], map[string]string{"db.namespace": "inventory", "db.response.returned_rows": "1"})

	// Accepted: what follows is TLS, which the parser cannot read, so it
	// must stay silent rather than make spans out of ciphertext, and it
	// holds nothing to count as unanswered at the close.
	tls := newWire(k, ProtoPostgres, 5, &clock)
	tls.write(pgSSLRequestMsg())
	tls.read([]byte("S"))
	tls.write(cat([]byte{0x16, 0x03, 0x01, 0x02, 0x00}, pgQuery("SELECT 1")))
	if s := tls.read(cat([]byte{0x17, 0x03, 0x03, 0, 20}, pgRows(1, "1"))); len(s) != 0 {
		t.Fatalf("spans out of a TLS stream: %v", s)
	}
	tls.close()
	if n := stats.KernelUnanswered.Load(); n != 0 {
		t.Errorf("unanswered = %d on a TLS connection", n)
	}
}

func TestKernelPGExtendedProtocol(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(pgStartup("user", "app", "database", "shop"))
	w.read(pgServerHello())

	// Parse/Bind/Describe/Execute/Sync in one write, as libpq and pgx send
	// an unnamed statement: one span, named after the Parse's text.
	const q = "SELECT name FROM users WHERE id = $1"
	w.write(cat(pgParse("", q), pgBind("", "", "42"), pgDescribe('P', ""), pgExecute(""), pgSyncMsg()))
	spans := w.read(cat(pgParseComplete(), pgBindComplete(), pgRowDesc("name"), pgDataRow("ann"),
		pgComplete("SELECT 1"), pgReady()))
	wantNames(t, spans, "SELECT users")
	wantAttrs(t, spans[0], map[string]string{"db.query.text": q, "db.response.returned_rows": "1"})

	// A named statement prepared on its own (Parse + Sync, no Execute)
	// answers with a ReadyForQuery but is not a query: no span.
	const named = "UPDATE users SET seen = now() WHERE id = $1"
	w.write(cat(pgParse("touch_user", named), pgSyncMsg()))
	if s := w.read(cat(pgParseComplete(), pgReady())); len(s) != 0 {
		t.Fatalf("a prepare made spans: %v", s)
	}
	// Executed later by name, with no Parse in the batch: the text comes
	// from what the prepare said.
	for i := range 2 {
		w.write(cat(pgBind("", "touch_user", strconv.Itoa(i)), pgExecute(""), pgSyncMsg()))
		spans = w.read(cat(pgBindComplete(), pgComplete("UPDATE 1"), pgReady()))
		wantNames(t, spans, "UPDATE users")
		wantAttrs(t, spans[0], map[string]string{"db.query.text": named, "zerotrace.db.rows_affected": "1"})
	}
}

func TestKernelPGPrepareWithoutExecuteKeepsPairing(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	// A prepare (Parse + Sync) and a simple query written before the
	// server answers either: the prepare's ReadyForQuery must be used up
	// by the prepare, so that the query pairs with the one after it.
	w.write(cat(pgParse("s1", "SELECT * FROM users WHERE id = $1"), pgSyncMsg()))
	w.write(pgQuery("SELECT * FROM orders"))
	if s := w.read(cat(pgParseComplete(), pgReady())); len(s) != 0 {
		t.Fatalf("the prepare's answer made spans: %v", s)
	}
	spans := w.read(pgRows(2, "x"))
	wantNames(t, spans, "SELECT orders")
	wantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "2"})

	// The same, answered in one read.
	w.write(cat(pgParse("s2", "SELECT * FROM users WHERE id = $1"), pgSyncMsg()))
	w.write(pgQuery("SELECT * FROM invoices"))
	wantNames(t, w.read(cat(pgParseComplete(), pgReady(), pgRows(1, "y"))), "SELECT invoices")
}

func TestKernelPGErrorResponse(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(pgQuery("SELECT * FROM nope"))
	spans := w.read(cat(pgErrorResp("42P01", `relation "nope" does not exist`), pgReady()))
	wantNames(t, spans, "SELECT nope")
	s := spans[0]
	if s.Status != codes.Error || s.StatusMsg != `relation "nope" does not exist` {
		t.Errorf("status %v %q", s.Status, s.StatusMsg)
	}
	wantAttrs(t, s, map[string]string{"error.type": "42P01", "db.response.status_code": "42P01"})

	// In an extended batch the server skips to the Sync after an error.
	w.write(cat(pgParse("", "INSERT INTO users (id) VALUES ($1)"), pgBind("", "", "1"), pgExecute(""), pgSyncMsg()))
	spans = w.read(cat(pgParseComplete(), pgBindComplete(), pgErrorResp("23505", "duplicate key value"), pgReady()))
	wantNames(t, spans, "INSERT users")
	wantAttrs(t, spans[0], map[string]string{"error.type": "23505"})

	// An error belongs to its own query only.
	w.write(pgQuery("SELECT * FROM users"))
	spans = w.read(pgRows(1, "a"))
	wantNames(t, spans, "SELECT users")
	if spans[0].Status != codes.Unset || attr(spans[0], "error.type") != "" {
		t.Errorf("the error leaked into the next query: %v %q", spans[0].Status, attr(spans[0], "error.type"))
	}
}

func TestKernelPGLargeResultPastCapture(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(pgQuery("SELECT * FROM events"))
	// 300 rows of 40 bytes, read 4096 bytes at a time: the parser loses
	// the message boundaries past the first 512 bytes of the first read,
	// and only the Ready flag of the last read tells it the answer ended.
	answer := pgRows(300, strings.Repeat("e", 40))
	spans, at, times := w.readChunks(answer, 4096)
	if len(times) < 3 {
		t.Fatalf("the answer fits in %d reads; the test wants several", len(times))
	}
	wantNames(t, spans, "SELECT events")
	if at[0] != len(times)-1 || !spans[0].End.Equal(times[len(times)-1]) {
		t.Errorf("span ended at read %d (%v), want the last, %d", at[0], spans[0].End, len(times)-1)
	}
	// The tag was past the capture: no row count rather than a wrong one.
	wantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": ""})

	// The reader is back on a boundary: the next query is read in full.
	w.write(pgQuery("SELECT * FROM users"))
	spans = w.read(pgRows(2, "u"))
	wantNames(t, spans, "SELECT users")
	wantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "2"})

	// A big answer whose last read is itself past the capture and flagged
	// Ready: the whole answer in one read.
	w.write(pgQuery("SELECT * FROM logs"))
	spans = w.read(pgRows(100, strings.Repeat("l", 30)))
	wantNames(t, spans, "SELECT logs")
}

func TestKernelPGPipelinedQueries(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(cat(pgQuery("SELECT * FROM a"), pgQuery("DELETE FROM b WHERE id = 9")))
	spans := w.read(cat(pgRows(2, "x"), pgComplete("DELETE 1"), pgReady()))
	wantNames(t, spans, "SELECT a", "DELETE b")
	wantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "2"})
	wantAttrs(t, spans[1], map[string]string{"zerotrace.db.rows_affected": "1", "db.query.text": "DELETE FROM b WHERE id = ?"})
	if spans[0].SpanID == spans[1].SpanID {
		t.Errorf("two queries share span ID %s", spans[0].SpanID)
	}
}

func TestKernelPGMessageSplitAcrossReads(t *testing.T) {
	// A DataRow of 300 bytes, and the whole answer. Where it is cut
	// decides which skip path is taken; every case must find the
	// CommandComplete after it, which proves the reader landed on the
	// boundary after the row.
	row := pgDataRow(strings.Repeat("r", 293))
	answer := cat(pgRowDesc("v"), row, pgComplete("SELECT 1"), pgReady())
	rowStart := len(pgRowDesc("v"))
	rowEnd := rowStart + len(row)
	for _, c := range []struct {
		name string
		cuts []int // where reads end, within answer
	}{
		{"mid row", []int{rowStart + 100}},
		{"row spans a whole read", []int{rowStart + 50, rowStart + 200}},
		{"read ends at the row's end", []int{rowEnd}},
		{"read ends inside the row, then exactly at its end", []int{rowStart + 20, rowEnd}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newKernelTracer(&Stats{}, &seqIDs{})
			var clock int
			w := newWire(k, ProtoPostgres, 4, &clock)
			w.write(pgQuery("SELECT v FROM t"))
			var spans []*model.Span
			prev := 0
			for _, cut := range append(c.cuts, len(answer)) {
				got := w.read(answer[prev:cut])
				if cut != len(answer) && len(got) != 0 {
					t.Fatalf("span before the last read: %v", got)
				}
				spans = append(spans, got...)
				prev = cut
			}
			wantNames(t, spans, "SELECT t")
			wantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "1"})
			if !spans[0].End.Equal(w.last) {
				t.Errorf("end %v, want the last read %v", spans[0].End, w.last)
			}
		})
	}

	// A message header cut between reads: its length is unknown, so the
	// reader is lost until a read that ends with ReadyForQuery.
	t.Run("header split", func(t *testing.T) {
		k := newKernelTracer(&Stats{}, &seqIDs{})
		var clock int
		w := newWire(k, ProtoPostgres, 4, &clock)
		w.write(pgQuery("SELECT v FROM t"))
		if s := w.read(answer[:rowStart+2]); len(s) != 0 {
			t.Fatalf("early span %v", s)
		}
		wantNames(t, w.read(answer[rowStart+2:]), "SELECT t")
	})
}

func TestKernelPGConnectionBeforeAgent(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	// The tail of an answer to something sent before the agent attached:
	// nothing awaits it.
	if s := w.read(cat(pgComplete("SELECT 1"), pgReady())); len(s) != 0 {
		t.Fatalf("spans for an answer with no query: %v", s)
	}
	// No startup seen: the first thing seen is a Query.
	w.write(pgQuery("SELECT * FROM items"))
	spans := w.read(pgRows(4, "i"))
	wantNames(t, spans, "SELECT items")
	wantAttrs(t, spans[0], map[string]string{"db.namespace": "", "db.response.returned_rows": "4", "db.system.name": "postgresql"})
}

func TestKernelPGTruncatedQueryText(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	// A query longer than the capture: the text is what was seen, marked
	// truncated, and it still pairs with its answer.
	q := "SELECT * FROM items WHERE id IN (" + strings.Repeat("1234, ", 150) + "1)"
	w.write(pgQuery(q))
	spans := w.read(pgRows(1, "z"))
	wantNames(t, spans, "SELECT items")
	wantAttrs(t, spans[0], map[string]string{"zerotrace.truncated": "true"})
	if strings.Contains(attr(spans[0], "db.query.text"), "1234") {
		t.Errorf("literal left in %q", attr(spans[0], "db.query.text"))
	}

	// An extended batch whose Bind carries a parameter bigger than the
	// capture: the Sync is past the 512 bytes, but a batch is written
	// whole, so the batch still counts as one query.
	w.write(cat(pgParse("", "INSERT INTO blobs (data) VALUES ($1)"), pgBind("", "", strings.Repeat("b", 2000)),
		pgExecute(""), pgSyncMsg()))
	spans = w.read(cat(pgParseComplete(), pgBindComplete(), pgComplete("INSERT 0 1"), pgReady()))
	wantNames(t, spans, "INSERT blobs")
	wantAttrs(t, spans[0], map[string]string{"db.query.text": "INSERT INTO blobs (data) VALUES ($1)"})
}

func TestKernelPGParseCutByCaptureThenBind(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(cat(pgParse("", "SELECT * FROM a"), pgBind("", ""), pgExecute(""), pgSyncMsg()))
	wantNames(t, w.read(cat(pgParseComplete(), pgBindComplete(), pgRows(1, "a"))), "SELECT a")
	// The unnamed statement redefined with a text longer than the
	// capture, in a write of its own; Bind/Execute/Sync follow in the
	// next write (a driver that flushes per message does this).
	long := "SELECT * FROM b WHERE id IN (" + strings.Repeat("1, ", 300) + "1)"
	w.write(pgParse("", long))
	w.write(cat(pgBind("", ""), pgExecute(""), pgSyncMsg()))
	spans := w.read(cat(pgParseComplete(), pgBindComplete(), pgRows(1, "b")))
	wantNames(t, spans, "SELECT b")
	wantAttrs(t, spans[0], map[string]string{"zerotrace.truncated": "true"})
}

func TestKernelPGCloseAndBounds(t *testing.T) {
	stats := &Stats{}
	k := newKernelTracer(stats, &seqIDs{})
	var clock int

	// A query never answered before the close is counted, not a span.
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(pgQuery("SELECT pg_sleep(100)"))
	if s := w.close(); len(s) != 0 {
		t.Fatalf("close made spans: %v", s)
	}
	if n := stats.KernelUnanswered.Load(); n != 1 {
		t.Errorf("unanswered = %d, want 1", n)
	}
	if len(k.streams) != 0 {
		t.Errorf("streams left after close: %d", len(k.streams))
	}

	// A close while an answer is being read past the capture ends the
	// query at its last read.
	w = newWire(k, ProtoPostgres, 5, &clock)
	w.write(pgQuery("SELECT * FROM big"))
	w.read(pgRows(100, strings.Repeat("x", 30))[:2000])
	last := w.last
	spans := w.close()
	wantNames(t, spans, "SELECT big")
	if !spans[0].End.Equal(last) {
		t.Errorf("ended at %v, want the last read %v", spans[0].End, last)
	}
	if n := stats.KernelUnanswered.Load(); n != 1 {
		t.Errorf("unanswered = %d, want still 1", n)
	}

	// A server that never answers: the queue stops at maxPending, the
	// oldest dropped and counted; the next answer goes to the oldest
	// query kept.
	stats.KernelUnanswered.Store(0)
	w = newWire(k, ProtoPostgres, 6, &clock)
	for i := range maxPending + 6 {
		w.write(pgQuery(fmt.Sprintf("SELECT * FROM t%d", i)))
	}
	if n := len(w.stream().pg.ops); n != maxPending {
		t.Errorf("%d queries held, want %d", n, maxPending)
	}
	if n := stats.KernelUnanswered.Load(); n != 6 {
		t.Errorf("unanswered = %d, want 6", n)
	}
	wantNames(t, w.read(cat(pgComplete("SELECT 0"), pgReady())), "SELECT t6")
	w.close()
	if n := stats.KernelUnanswered.Load(); n != 6+maxPending-1 {
		t.Errorf("unanswered = %d, want %d", n, 6+maxPending-1)
	}
}

// ===== Redis =============================================================

func TestKernelRedisCommands(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	w.write(respCmd("SET", "user:1", "ann"))
	start := w.last
	spans := w.read([]byte("+OK\r\n"))
	wantNames(t, spans, "SET")
	s := spans[0]
	if s.Kind != trace.SpanKindClient || !s.Start.Equal(start) || !s.End.Equal(w.last) || s.Status != codes.Unset {
		t.Errorf("kind %v start %v end %v status %v", s.Kind, s.Start, s.End, s.Status)
	}
	wantAttrs(t, s, map[string]string{
		"db.system.name":    "redis",
		"db.operation.name": "SET",
		"db.query.text":     "SET ? ?",
		"db.namespace":      "",
		"zerotrace.source":  "kernel",
		"server.address":    "10.0.0.5",
	})
	w.write(respCmd("get", "user:1"))
	spans = w.read(respBulk("ann"))
	wantNames(t, spans, "GET") // the name is upper-cased
	wantAttrs(t, spans[0], map[string]string{"db.query.text": "GET ?"})
	w.write(respCmd("INCR", "hits"))
	wantNames(t, w.read([]byte(":5\r\n")), "INCR")
	w.write(respCmd("PING"))
	spans = w.read([]byte("+PONG\r\n"))
	wantNames(t, spans, "PING")
	wantAttrs(t, spans[0], map[string]string{"db.query.text": "PING"})
}

func TestKernelRedisPipelined(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	w.write(cat(respCmd("SET", "a", "1"), respCmd("GET", "a"), respCmd("INCR", "n"), respCmd("DEL", "a"), respCmd("GET", "a")))
	spans := w.read([]byte("+OK\r\n$1\r\n1\r\n:1\r\n:1\r\n$-1\r\n"))
	wantNames(t, spans, "SET", "GET", "INCR", "DEL", "GET")
	for _, s := range spans {
		if !s.End.Equal(w.last) {
			t.Errorf("%s ended at %v, want %v", s.Name, s.End, w.last)
		}
	}
	// A bulk's header in one read and its data in the next pair the same
	// way.
	w.write(cat(respCmd("SET", "a", "1"), respCmd("GET", "a"), respCmd("INCR", "n")))
	spans = w.read([]byte("+OK\r\n$1\r\n"))
	spans = append(spans, w.read([]byte("1\r\n:2\r\n"))...)
	wantNames(t, spans, "SET", "GET", "INCR")
}

func TestKernelRedisErrors(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	const wrongType = "WRONGTYPE Operation against a key holding the wrong kind of value"
	w.write(respCmd("LPUSH", "greeting", "hi"))
	spans := w.read([]byte("-" + wrongType + "\r\n"))
	wantNames(t, spans, "LPUSH")
	if spans[0].Status != codes.Error || spans[0].StatusMsg != wrongType {
		t.Errorf("status %v %q", spans[0].Status, spans[0].StatusMsg)
	}
	wantAttrs(t, spans[0], map[string]string{"error.type": "WRONGTYPE"})

	// RESP3's blob error carries its message in a bulk.
	w.write(respCmd("FOO"))
	spans = w.read([]byte("!21\r\nSYNTAX invalid syntax\r\n"))
	wantNames(t, spans, "FOO")
	wantAttrs(t, spans[0], map[string]string{"error.type": "SYNTAX"})

	// The error of one command is not the next one's.
	w.write(respCmd("GET", "greeting"))
	spans = w.read(respBulk("hi"))
	if spans[0].Status != codes.Unset || attr(spans[0], "error.type") != "" {
		t.Errorf("error leaked: %v %q", spans[0].Status, attr(spans[0], "error.type"))
	}
	// An error inside an array (EXEC's answers) does not fail the command.
	w.write(respCmd("EXEC"))
	spans = w.read([]byte("*2\r\n+OK\r\n-ERR value is not an integer\r\n"))
	wantNames(t, spans, "EXEC")
	if spans[0].Status != codes.Unset {
		t.Errorf("EXEC with one failed command is %v", spans[0].Status)
	}
}

func TestKernelRedisNullAndNested(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	for _, c := range []struct{ cmd, reply string }{
		{"GET", "$-1\r\n"},
		{"BLPOP", "*-1\r\n"},
		{"LRANGE", "*0\r\n"},
		{"XRANGE", "*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$3\r\n2-0\r\n*0\r\n"},
		{"HGETALL", "%2\r\n+f1\r\n$2\r\nv1\r\n+f2\r\n*1\r\n:1\r\n"},
		{"SMEMBERS", "~2\r\n+a\r\n+b\r\n"},
		{"GET", "_\r\n"},
		{"INCRBYFLOAT", ",3.5\r\n"},
		{"HELLO", "%1\r\n+server\r\n+redis\r\n"},
	} {
		w.write(respCmd(c.cmd, "k"))
		spans := w.read([]byte(c.reply))
		wantNames(t, spans, c.cmd)
		if p := w.stream().pending(); p != 0 {
			t.Fatalf("%s: %d left pending after %q", c.cmd, p, c.reply)
		}
	}
	// A nested reply cut between reads at every possible point, followed
	// by a second reply in the last read. Each cut gets a fresh tracer.
	reply := "*3\r\n*2\r\n:1\r\n$5\r\nhello\r\n*1\r\n*1\r\n+deep\r\n$2\r\nok\r\n"
	for cut := 1; cut < len(reply); cut++ {
		k := newKernelTracer(&Stats{}, &seqIDs{})
		w := newWire(k, ProtoRedis, 4, &clock)
		w.write(cat(respCmd("EVAL", "s", "0"), respCmd("PING")))
		first := w.read([]byte(reply[:cut]))
		rest := w.read([]byte(reply[cut:] + "+PONG\r\n"))
		lastRead := w.last
		if len(first) != 0 {
			t.Fatalf("cut %d: early spans %v", cut, first)
		}
		if strings.HasSuffix(reply[:cut], "\r\n") || isBulkCut(reply, cut) {
			// Cut between lines, or inside a bulk's data, which is skipped
			// by count: the reader keeps its place.
			wantNames(t, rest, "EVAL", "PING")
			continue
		}
		// A line cut in two: the reader is lost, and the next command
		// written ends, at the last read, both commands written before
		// the loss (their replies were in what could not be followed).
		if len(rest) != 0 {
			t.Fatalf("cut %d: spans from a lost reader %v", cut, rest)
		}
		settled := w.write(respCmd("PING"))
		wantNames(t, settled, "EVAL", "PING")
		if !settled[0].End.Equal(lastRead) {
			t.Errorf("cut %d: EVAL ended at %v, want %v", cut, settled[0].End, lastRead)
		}
	}
}

// isBulkCut says whether cut falls inside the data of a bulk string of
// reply, which the reader skips by count rather than by line.
func isBulkCut(reply string, cut int) bool {
	for i := 0; i < len(reply); {
		j := strings.Index(reply[i:], "\r\n") + i
		if reply[i] == '$' {
			n, _ := strconv.Atoi(reply[i+1 : j])
			start, end := j+2, j+2+n+2
			if cut > start && cut < end {
				return true
			}
			i = end
			continue
		}
		i = j + 2
	}
	return false
}

func TestKernelRedisBigBulkAcrossReads(t *testing.T) {
	const read = 65536
	for _, c := range []struct {
		name string
		size int
	}{
		{"200000 bytes", 200000},
		// "$196597\r\n" + data + "\r\n" is exactly three reads.
		{"ends at a read's end", 3*read - len("$196597\r\n") - 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newKernelTracer(&Stats{}, &seqIDs{})
			var clock int
			w := newWire(k, ProtoRedis, 4, &clock)
			w.write(respCmd("GET", "blob"))
			reply := respBulk(strings.Repeat("v", c.size))
			spans, at, times := w.readChunks(reply, read)
			wantNames(t, spans, "GET")
			if last := len(times) - 1; at[0] != last || !spans[0].End.Equal(times[last]) {
				t.Errorf("ended at read %d of %d", at[0], len(times))
			}
			// The next reply, in a read of its own, is read from its start.
			w.write(respCmd("GET", "small"))
			wantNames(t, w.read(respBulk("s")), "GET")

			// Pipelined behind the big one, its reply in the last read. When
			// the bulk ends at a read's end, that reply has a read of its own
			// and is read there; otherwise it sits past the 512 bytes the
			// probe copied, the reader is lost, and the next command written
			// ends it at that same last read.
			// The same goes for a big bulk inside an array, with the array's
			// next element after it.
			for _, p := range []struct {
				cmds  []byte
				reply []byte
				names []string
			}{
				{cat(respCmd("GET", "blob"), respCmd("TTL", "blob")), cat(reply, []byte(":-1\r\n")), []string{"GET", "TTL"}},
				{respCmd("MGET", "blob", "k"), cat([]byte("*2\r\n"), reply, respBulk("k")), []string{"MGET"}},
			} {
				w.write(p.cmds)
				spans, _, times = w.readChunks(p.reply, read)
				spans = append(spans, w.write(respCmd("PING"))...)
				wantNames(t, spans, p.names...)
				if last := spans[len(spans)-1]; !last.End.Equal(times[len(times)-1]) {
					t.Errorf("%s ended at %v, want the last read %v", last.Name, last.End, times[len(times)-1])
				}
				if bulkEnd := times[(len(reply)-1)/read]; spans[0].Name == "GET" && !spans[0].End.Equal(bulkEnd) {
					t.Errorf("GET ended at %v, want the read with the bulk's end %v", spans[0].End, bulkEnd)
				}
				wantNames(t, w.read([]byte("+PONG\r\n")), "PING")
			}
			if p := w.stream().pending(); p != 0 {
				t.Errorf("%d pending", p)
			}
		})
	}
}

func TestKernelRedisReplyLostPastCapture(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	// A hundred short elements: lines run past the first 512 bytes, so the
	// reader loses the reply's shape and cannot tell when it ends.
	var big []byte
	big = append(big, "*100\r\n"...)
	for range 100 {
		big = append(big, respBulk("0123456789")...)
	}
	w.write(respCmd("LRANGE", "list", "0", "-1"))
	if s := w.read(big[:1000]); len(s) != 0 {
		t.Fatalf("early span %v", s)
	}
	if s := w.read(big[1000:]); len(s) != 0 {
		t.Fatalf("early span %v", s)
	}
	lastRead := w.last
	// The next command settles it: the lost one ends at the last read
	// before it was written.
	spans := w.write(respCmd("GET", "k"))
	wantNames(t, spans, "LRANGE")
	if !spans[0].End.Equal(lastRead) {
		t.Errorf("LRANGE ended at %v, want the last read %v", spans[0].End, lastRead)
	}
	// And the reader starts afresh.
	wantNames(t, w.read(respBulk("v")), "GET")

	// A line longer than the capture, then a close: the close settles it.
	w.write(respCmd("INFO"))
	w.read([]byte("+" + strings.Repeat("i", 1000) + "\r\n"))
	lastRead = w.last
	spans = w.close()
	wantNames(t, spans, "INFO")
	if !spans[0].End.Equal(lastRead) {
		t.Errorf("INFO ended at %v, want %v", spans[0].End, lastRead)
	}
}

func TestKernelRedisPipelinedReplyLost(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	var big []byte
	big = append(big, "*100\r\n"...)
	for range 100 {
		big = append(big, respBulk("0123456789")...)
	}
	w.write(cat(respCmd("LRANGE", "list", "0", "-1"), respCmd("GET", "k")))
	w.read(cat(big, respBulk("v")))
	// Both replies were in the read the reader lost; SET's reply must
	// not be taken for GET's.
	w.write(respCmd("SET", "a", "b"))
	spans := w.read([]byte("+OK\r\n"))
	wantNames(t, spans, "SET")
}

func TestKernelRedisSelect(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	w.write(respCmd("SELECT", "2"))
	spans := w.read([]byte("+OK\r\n"))
	wantNames(t, spans, "SELECT")
	wantAttrs(t, spans[0], map[string]string{"db.namespace": "2"})
	w.write(respCmd("GET", "k"))
	wantAttrs(t, w.read([]byte("$-1\r\n"))[0], map[string]string{"db.namespace": "2"})
	// SELECT with something that is not an index changes nothing.
	w.write(respCmd("SELECT", "x"))
	w.read([]byte("-ERR invalid DB index\r\n"))
	w.write(respCmd("GET", "k"))
	wantAttrs(t, w.read([]byte("$-1\r\n"))[0], map[string]string{"db.namespace": "2"})
}

func TestKernelRedisMalformed(t *testing.T) {
	stats := &Stats{}
	k := newKernelTracer(stats, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	for _, b := range []string{
		"*x\r\n$3\r\nGET\r\n",   // no count
		"*0\r\n$3\r\nGET\r\n",   // an empty command
		"*1\r\n:3\r\n",          // an element that is not a bulk
		"*1\r\n$-3\r\nGET\r\n",  // a negative size
		"*1\r\n$5\r\nGE T!\r\n", // not a command name
		"*1\r\n$40\r\n" + strings.Repeat("A", 40) + "\r\n", // a name too long
	} {
		if s := w.write([]byte(b)); len(s) != 0 {
			t.Errorf("%q: spans %v", b, s)
		}
	}
	if n := stats.KernelMalformed.Load(); n != 6 {
		t.Errorf("malformed = %d, want 6", n)
	}
	if p := w.stream().pending(); p != 0 {
		t.Errorf("%d malformed commands queued", p)
	}
	// Nothing awaits a reply, so a reply makes nothing.
	if s := w.read([]byte("+OK\r\n")); len(s) != 0 {
		t.Errorf("spans %v", s)
	}
	// The descriptor still works.
	w.write(respCmd("GET", "k"))
	wantNames(t, w.read([]byte("$-1\r\n")), "GET")
}

func TestKernelRedisPipelineCutByCapture(t *testing.T) {
	cmd := respCmd("SET", "key", "val")
	// Every position of the capture's end within the fifth command.
	tried := 0
	for cut := 1; cut < len(cmd); cut++ {
		stats := &Stats{}
		k := newKernelTracer(stats, &seqIDs{})
		var clock int
		w := newWire(k, ProtoRedis, 4, &clock)
		// A first command padded so that byte 512 is cut bytes into the
		// fifth command.
		var first []byte
		for pad := 0; len(first) < sockCapture-cut-4*len(cmd); pad++ {
			first = respCmd("SET", "k", strings.Repeat("v", pad))
		}
		if len(first)+4*len(cmd)+cut != sockCapture {
			continue // no padding lands exactly there
		}
		tried++
		pipeline := first
		for range 10 {
			pipeline = append(pipeline, cmd...)
		}
		w.write(pipeline)
		if n := stats.KernelMalformed.Load(); n != 0 {
			t.Errorf("capture ending %d bytes into a command: malformed = %d", cut, n)
		}
		// The commands wholly seen are answered in order.
		spans := w.read(bytes.Repeat([]byte("+OK\r\n"), 11))
		if len(spans) < 5 {
			t.Errorf("capture ending %d bytes into a command: %d spans", cut, len(spans))
		}
	}
	if tried < len(cmd)-3 {
		t.Errorf("only %d of %d cut positions tried", tried, len(cmd)-1)
	}
}

func TestKernelRedisCloseAndBounds(t *testing.T) {
	stats := &Stats{}
	k := newKernelTracer(stats, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	// A server that never answers: the queue stops at maxPending, the
	// oldest dropped and counted, and the next reply goes to the oldest
	// command kept.
	for i := range maxPending + 3 {
		w.write(respCmd("GET", "k"+strconv.Itoa(i)))
	}
	if n := len(w.stream().redis.cmds); n != maxPending {
		t.Errorf("%d commands held, want %d", n, maxPending)
	}
	if n := stats.KernelUnanswered.Load(); n != 3 {
		t.Errorf("unanswered = %d, want 3", n)
	}
	spans := w.read([]byte("$-1\r\n"))
	wantNames(t, spans, "GET")
	if !spans[0].Start.Equal(time.Unix(2000, 0).Add(4 * time.Millisecond)) {
		t.Errorf("the reply went to the command written at %v, want the fourth", spans[0].Start)
	}
	// The rest are counted at the close, which leaves nothing behind.
	if s := w.close(); len(s) != 0 {
		t.Errorf("close made spans %v", s)
	}
	if n := stats.KernelUnanswered.Load(); n != 3+maxPending-1 {
		t.Errorf("unanswered = %d, want %d", n, 3+maxPending-1)
	}
	if len(k.streams) != 0 {
		t.Errorf("%d streams left", len(k.streams))
	}
}

func TestKernelRedisArgsNeverInSpan(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	w.write(respCmd("SET", "secret-key", "secret-value"))
	spans := w.read([]byte("+OK\r\n"))
	w.write(respCmd("AUTH", "admin", "secret-password"))
	spans = append(spans, w.read([]byte("+OK\r\n"))...)
	many := []string{"HSET", "h"}
	for i := range 100 {
		many = append(many, "secret"+strconv.Itoa(i))
	}
	w.write(respCmd(many...))
	spans = append(spans, w.read([]byte(":50\r\n"))...)
	wantNames(t, spans, "SET", "AUTH", "HSET")
	wantAttrs(t, spans[0], map[string]string{"db.query.text": "SET ? ?"})
	wantAttrs(t, spans[1], map[string]string{"db.query.text": "AUTH ? ?"})
	// At most 64 placeholders, however many arguments.
	wantAttrs(t, spans[2], map[string]string{"db.query.text": "HSET" + strings.Repeat(" ?", 64)})
	for _, s := range spans {
		if strings.Contains(s.Name+s.StatusMsg, "secret") {
			t.Errorf("argument in %q %q", s.Name, s.StatusMsg)
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "secret") {
				t.Errorf("argument in %s = %q", kv.Key, kv.Value.Emit())
			}
		}
	}
}

// The panics below come from input a traced process or its server can
// send; the agent must not crash on them.

// noPanic runs f and fails the test, instead of the whole binary, if it
// panics.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s: panic %v", what, p)
		}
	}()
	f()
}

func TestKernelRedisReplyEmptyLine(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	w.write(respCmd("GET", "k"))
	// Attached mid-reply: the first read starts with the end of a bulk.
	noPanic(t, "read", func() { w.read([]byte("\r\n+OK\r\n")) })
}

func TestKernelRedisHugeBulkSize(t *testing.T) {
	huge := strconv.FormatInt(math.MaxInt64, 10)
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	noPanic(t, "write", func() { w.write([]byte("*1\r\n$" + huge + "\r\nGET\r\n")) })
	w = newWire(k, ProtoRedis, 5, &clock)
	w.write(respCmd("GET", "k"))
	noPanic(t, "read", func() { w.read([]byte("$" + huge + "\r\nabc\r\n")) })
	w.write(respCmd("GET", "k"))
	noPanic(t, "read !", func() { w.read([]byte("!" + huge + "\r\nabc\r\n")) })
}

func TestKernelPGSSLAnswerNotCaptured(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(pgSSLRequestMsg())
	d := w.record(SockRead, []byte("N"+string(pgServerHello())))
	d.Data = nil
	noPanic(t, "read", func() { w.send(d) })
}

// ===== Parent and child ==================================================

func TestKernelDBChildOfServedRequest(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	// A thread-per-request server: thread 100 reads a request on fd 20,
	// queries PostgreSQL on fd 21 and Redis on fd 22, then answers.
	req := sock(SockRead, 20, 0, "GET /orders HTTP/1.1\r\nHost: shop\r\n\r\n")
	req.TID = 100
	k.handle(req)
	pg := newWire(k, ProtoPostgres, 21, &clock)
	rd := newWire(k, ProtoRedis, 22, &clock)
	pg.write(pgQuery("SELECT * FROM orders"))
	rd.write(respCmd("GET", "cache"))
	other := newWire(k, ProtoPostgres, 23, &clock)
	other.tid = 101 // another thread, serving nothing
	other.write(pgQuery("SELECT 1"))
	q := pg.read(pgRows(1, "o"))
	c := rd.read([]byte("$-1\r\n"))
	o := other.read(pgRows(1, "1"))
	resp := sock(SockWrite, 20, 50, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.TID = 100
	server := conv(slices.Clone(k.handle(resp)))
	if len(q) != 1 || len(c) != 1 || len(o) != 1 || len(server) != 1 {
		t.Fatalf("spans: %d %d %d %d", len(q), len(c), len(o), len(server))
	}
	srv := server[0]
	for _, s := range []*model.Span{q[0], c[0]} {
		if s.ParentSpanID != srv.SpanID || s.TraceID != srv.TraceID {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", s.Name, s.TraceID, s.ParentSpanID, srv.TraceID, srv.SpanID)
		}
	}
	if o[0].ParentSpanID.IsValid() || o[0].TraceID == srv.TraceID {
		t.Errorf("another thread's query joined the request: trace %s parent %s", o[0].TraceID, o[0].ParentSpanID)
	}
	// The request is answered: the thread's next query starts a trace.
	pg.write(pgQuery("SELECT * FROM audit"))
	after := pg.read(pgRows(0, ""))
	if len(after) != 1 || after[0].ParentSpanID.IsValid() || after[0].TraceID == srv.TraceID {
		t.Errorf("a query after the response still has the request as parent: %+v", after)
	}
	if len(k.serving) != 0 {
		t.Errorf("serving left: %v", k.serving)
	}

	// A request that continues a caller's trace: the query is in that
	// trace too, under the server span.
	req = sock(SockRead, 20, 60, "GET /orders HTTP/1.1\r\n"+
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	req.TID = 100
	k.handle(req)
	rd.write(respCmd("GET", "cache"))
	c = rd.read([]byte("$-1\r\n"))
	resp.Time = rd.last.Add(time.Millisecond)
	server = conv(slices.Clone(k.handle(resp)))
	if len(c) != 1 || len(server) != 1 || c[0].TraceID.String() != "0af7651916cd43dd8448eb211c80319c" ||
		c[0].TraceID != server[0].TraceID || c[0].ParentSpanID != server[0].SpanID {
		t.Errorf("query %+v under continued request %+v", c, server)
	}
}

func TestKernelDBEventLoopNoParent(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	// One thread reads two requests before answering either: a query it
	// makes could belong to either, so it belongs to neither.
	for _, fd := range []int32{30, 31} {
		req := sock(SockRead, fd, 0, "GET /x HTTP/1.1\r\n\r\n")
		req.TID = 200
		k.handle(req)
	}
	pg := newWire(k, ProtoPostgres, 32, &clock)
	pg.tid = 200
	pg.write(pgQuery("SELECT * FROM a"))
	spans := pg.read(pgRows(1, "a"))
	wantNames(t, spans, "SELECT a")
	if spans[0].ParentSpanID.IsValid() {
		t.Errorf("parent %s chosen among two requests", spans[0].ParentSpanID)
	}
	resp := sock(SockWrite, 30, 1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.TID = 200
	first := conv(slices.Clone(k.handle(resp)))
	if len(first) != 1 || spans[0].TraceID == first[0].TraceID {
		t.Fatalf("query in the trace of request 1: %v", first)
	}
	// One request left in flight: the thread's calls are its children again.
	pg.write(pgQuery("SELECT * FROM b"))
	spans = pg.read(pgRows(1, "b"))
	resp = sock(SockWrite, 31, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.TID = 200
	second := conv(slices.Clone(k.handle(resp)))
	if len(second) != 1 || spans[0].ParentSpanID != second[0].SpanID || spans[0].TraceID != second[0].TraceID {
		t.Errorf("query %s/%s, remaining request %v", spans[0].TraceID, spans[0].ParentSpanID, second)
	}
}

// ===== Fuzz ================================================================

func FuzzKernelDatabase(f *testing.F) {
	answer := pgRows(3, "row")
	f.Add(pgStartup("user", "u", "database", "d"), pgServerHello(), true, uint32(0), uint32(0), uint16(0))
	f.Add(pgQuery("SELECT * FROM t WHERE a = 'x'"), answer, true, uint32(0), uint32(0), uint16(20))
	f.Add(pgSSLRequestMsg(), []byte("N"), false, uint32(0), uint32(0), uint16(0))
	f.Add(cat(pgParse("", "SELECT $1"), pgBind("", "", "1"), pgDescribe('P', ""), pgExecute(""), pgSyncMsg()),
		cat(pgParseComplete(), pgBindComplete(), answer), true, uint32(3000), uint32(0), uint16(9))
	f.Add(pgQuery("SELECT 1"), cat(pgErrorResp("42601", "syntax"), pgReady()), true, uint32(0), uint32(9000), uint16(3))
	f.Add(cat(respCmd("SET", "k", "v"), respCmd("GET", "k")), []byte("+OK\r\n$1\r\nv\r\n"), false, uint32(0), uint32(0), uint16(7))
	f.Add(respCmd("LRANGE", "l", "0", "-1"), []byte("*2\r\n*1\r\n:1\r\n$70000\r\nab"), false, uint32(0), uint32(70000), uint16(5))
	f.Add(respCmd("HGETALL", "h"), []byte("%1\r\n+f\r\n-WRONGTYPE x\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(respCmd("SELECT", "3"), []byte("+OK\r\n"), false, uint32(0), uint32(0), uint16(1))
	f.Add(myPacket(0, myQuery("SELECT * FROM t WHERE a = 'x'")), cat(myPacket(1, []byte{1}), myPacket(2, myColumn()), myPacket(3, myEOF(0)),
		myPacket(4, myRow("a")), myPacket(5, myEOF(0))), true, uint32(0), uint32(0), uint16(11))
	f.Add(myPacket(0, myQuery("INSERT INTO t VALUES (1)")), myPacket(1, myOK(1, 0)), false, uint32(0), uint32(0), uint16(0))
	f.Add(myPacket(0, []byte{0x17, 1, 0, 0, 0}), myPacket(1, myErr(1146, "42S02", "no such table")), false, uint32(0), uint32(0), uint16(4))
	// Inputs that once made the parsers panic.
	f.Add(respCmd("GET", "k"), []byte("\r\n+OK\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add([]byte("*1\r\n$9223372036854775807\r\nGET\r\n"), []byte("+OK\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(respCmd("GET", "k"), []byte("$9223372036854775800\r\nabc\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(pgSSLRequestMsg(), []byte{}, false, uint32(0), uint32(5), uint16(0))
	f.Fuzz(func(t *testing.T, w, r []byte, ready bool, wExtra, rExtra uint32, split uint16) {
		k := newKernelTracer(&Stats{}, &seqIDs{})
		at := 0
		// rec builds a record the way the probe does: the first 512 bytes,
		// and a Len of at least that, which may claim more than was given.
		rec := func(fd int32, proto SockProto, dir SockDir, b []byte, extra uint32, ready bool) *SockData {
			at++
			n := uint64(len(b)) + uint64(extra)
			return &SockData{PID: 1, TID: 9, FD: fd, Proto: proto, Dir: dir, Ready: ready,
				Time: time.Unix(3000, int64(at)*int64(time.Millisecond)),
				Len:  uint32(min(n, math.MaxUint32)), Data: b[:min(len(b), sockCapture)]}
		}
		check := func(spans []*model.Span) {
			conv(spans)
			for _, s := range spans {
				if s.Name == "" || attr(s, "db.system.name") == "" {
					t.Fatalf("span name %q system %q", s.Name, attr(s, "db.system.name"))
				}
				// Whatever the bytes, a Redis span shows the command's name
				// and a '?' per argument, never an argument.
				if attr(s, "db.system.name") == "redis" && strings.Trim(strings.TrimPrefix(attr(s, "db.query.text"), s.Name), " ?") != "" {
					t.Fatalf("redis span %q with text %q", s.Name, attr(s, "db.query.text"))
				}
				if s.End.Before(s.Start) {
					t.Fatalf("span %q ends %v before it starts %v", s.Name, s.End, s.Start)
				}
			}
		}
		// A request being served by the same thread: the database calls
		// become its children, and its entry in k.serving must go at the close.
		k.handle(&SockData{PID: 1, TID: 9, FD: 5, Dir: SockRead, Proto: ProtoHTTP, Data: []byte("GET / HTTP/1.1\r\n\r\n"), Len: 18})
		cut := int(split) % (len(r) + 1)
		for i, proto := range []SockProto{ProtoPostgres, ProtoRedis, ProtoMySQL} {
			fd := int32(10 + i)
			// Twice: what the first exchange leaves behind (bytes to skip, a
			// lost reader, unanswered commands) meets the second.
			for range 2 {
				for _, d := range []*SockData{
					rec(fd, proto, SockWrite, w, wExtra, false),
					rec(fd, proto, SockRead, r[:cut], rExtra, ready),
					rec(fd, proto, SockRead, r[cut:], 0, ready),
				} {
					// The probe sends nothing for a read or write of no bytes.
					if d.Len > 0 {
						check(k.handle(d))
					}
				}
			}
			check(k.handle(&SockData{PID: 1, TID: 9, FD: fd, Dir: SockClose, Time: time.Unix(3000, int64(at+1)*int64(time.Millisecond))}))
		}
		k.handle(&SockData{PID: 1, TID: 9, FD: 5, Dir: SockClose})
		if len(k.streams) != 0 || len(k.serving) != 0 {
			t.Fatalf("state left after close: %d streams, %d threads serving", len(k.streams), len(k.serving))
		}
	})
}
