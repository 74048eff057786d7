package postgres

import (
	"strconv"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// newWire returns a connection of process p to a PostgreSQL server, whose
// reads are flagged Ready as the probe flags them.
func newWire(p *prototest.Process, clock *int) *prototest.Wire {
	w := prototest.NewWire(p, New, clock)
	w.Ready = prototest.PGEndsWithReady
	return w
}

var attr = prototest.Attr

func TestStartupAndSimpleQuery(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	if s := w.Write(prototest.PGStartup("user", "app", "database", "shop", "application_name", "psql")); len(s) != 0 {
		t.Fatalf("startup made spans: %v", s)
	}
	// The server's answer to the startup ends with a ReadyForQuery that
	// no query awaits: it must not make a span.
	if s := w.Read(prototest.PGServerHello()); len(s) != 0 {
		t.Fatalf("server hello made spans: %v", s)
	}
	w.Write(prototest.PGQuery("SELECT id, name FROM items WHERE price > 10 AND name = 'x'"))
	start := w.Last
	spans := w.Read(prototest.Cat(prototest.PGRowDesc("id", "name"), prototest.PGDataRow("1", "a"), prototest.PGDataRow("2", "b"), prototest.PGDataRow("3", "c"),
		prototest.PGComplete("SELECT 3"), prototest.PGReady()))
	prototest.WantNames(t, spans, "SELECT items")
	s := spans[0]
	if s.Kind != trace.SpanKindClient || !s.Start.Equal(start) || !s.End.Equal(w.Last) || s.Status != codes.Unset {
		t.Errorf("kind %v start %v end %v status %v", s.Kind, s.Start, s.End, s.Status)
	}
	prototest.WantAttrs(t, s, map[string]string{
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
	w.Write(prototest.PGQuery("INSERT INTO items (name) VALUES ('secret')"))
	spans = w.Read(prototest.Cat(prototest.PGComplete("INSERT 0 1"), prototest.PGReady()))
	prototest.WantNames(t, spans, "INSERT items")
	prototest.WantAttrs(t, spans[0], map[string]string{
		"zerotrace.db.rows_affected": "1",
		"db.response.returned_rows":  "",
		"db.query.text":              "INSERT INTO items (name) VALUES (?)",
	})
	w.Write(prototest.PGQuery("UPDATE items SET price = 0"))
	spans = w.Read(prototest.Cat(prototest.PGComplete("UPDATE 12"), prototest.PGReady()))
	prototest.WantNames(t, spans, "UPDATE items")
	prototest.WantAttrs(t, spans[0], map[string]string{"zerotrace.db.rows_affected": "12"})
	if p := w.Parser.Pending(); p != 0 {
		t.Errorf("pending = %d after every query was answered", p)
	}
}

func TestSSLRequest(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	// Refused: the server's single 'N' says "go on in the clear", and
	// what follows is ordinary protocol.
	w := newWire(k, &clock)
	w.Write(prototest.PGSSLRequest())
	if s := w.Read([]byte("N")); len(s) != 0 {
		t.Fatalf("the SSL answer made spans: %v", s)
	}
	w.Write(prototest.PGStartup("user", "app", "database", "inventory"))
	w.Read(prototest.PGServerHello())
	w.Write(prototest.PGQuery("SELECT count(*) FROM stock"))
	spans := w.Read(prototest.PGRows(1, "42"))
	prototest.WantNames(t, spans, "SELECT stock")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.namespace": "inventory", "db.response.returned_rows": "1"})

	// Accepted: what follows is TLS, which the parser cannot read, so it
	// must stay silent rather than make spans out of ciphertext, and it
	// holds nothing to count as unanswered at the close.
	tls := newWire(k, &clock)
	tls.Write(prototest.PGSSLRequest())
	tls.Read([]byte("S"))
	tls.Write(prototest.Cat([]byte{0x16, 0x03, 0x01, 0x02, 0x00}, prototest.PGQuery("SELECT 1")))
	if s := tls.Read(prototest.Cat([]byte{0x17, 0x03, 0x03, 0, 20}, prototest.PGRows(1, "1"))); len(s) != 0 {
		t.Fatalf("spans out of a TLS stream: %v", s)
	}
	tls.Close()
	if n := k.Unanswered; n != 0 {
		t.Errorf("unanswered = %d on a TLS connection", n)
	}
}

func TestExtendedProtocol(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.PGStartup("user", "app", "database", "shop"))
	w.Read(prototest.PGServerHello())

	// Parse/Bind/Describe/Execute/Sync in one write, as libpq and pgx send
	// an unnamed statement: one span, named after the Parse's text.
	const q = "SELECT name FROM users WHERE id = $1"
	w.Write(prototest.Cat(prototest.PGParse("", q), prototest.PGBind("", "", "42"), prototest.PGDescribe('P', ""), prototest.PGExecute(""), prototest.PGSync()))
	spans := w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), prototest.PGRowDesc("name"), prototest.PGDataRow("ann"),
		prototest.PGComplete("SELECT 1"), prototest.PGReady()))
	prototest.WantNames(t, spans, "SELECT users")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.query.text": q, "db.response.returned_rows": "1"})

	// A named statement prepared on its own (Parse + Sync, no Execute)
	// answers with a ReadyForQuery but is not a query: no span.
	const named = "UPDATE users SET seen = now() WHERE id = $1"
	w.Write(prototest.Cat(prototest.PGParse("touch_user", named), prototest.PGSync()))
	if s := w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGReady())); len(s) != 0 {
		t.Fatalf("a prepare made spans: %v", s)
	}
	// Executed later by name, with no Parse in the batch: the text comes
	// from what the prepare said.
	for i := range 2 {
		w.Write(prototest.Cat(prototest.PGBind("", "touch_user", strconv.Itoa(i)), prototest.PGExecute(""), prototest.PGSync()))
		spans = w.Read(prototest.Cat(prototest.PGBindComplete(), prototest.PGComplete("UPDATE 1"), prototest.PGReady()))
		prototest.WantNames(t, spans, "UPDATE users")
		prototest.WantAttrs(t, spans[0], map[string]string{"db.query.text": named, "zerotrace.db.rows_affected": "1"})
	}
}

func TestPrepareWithoutExecuteKeepsPairing(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	// A prepare (Parse + Sync) and a simple query written before the
	// server answers either: the prepare's ReadyForQuery must be used up
	// by the prepare, so that the query pairs with the one after it.
	w.Write(prototest.Cat(prototest.PGParse("s1", "SELECT * FROM users WHERE id = $1"), prototest.PGSync()))
	w.Write(prototest.PGQuery("SELECT * FROM orders"))
	if s := w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGReady())); len(s) != 0 {
		t.Fatalf("the prepare's answer made spans: %v", s)
	}
	spans := w.Read(prototest.PGRows(2, "x"))
	prototest.WantNames(t, spans, "SELECT orders")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "2"})

	// The same, answered in one read.
	w.Write(prototest.Cat(prototest.PGParse("s2", "SELECT * FROM users WHERE id = $1"), prototest.PGSync()))
	w.Write(prototest.PGQuery("SELECT * FROM invoices"))
	prototest.WantNames(t, w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGReady(), prototest.PGRows(1, "y"))), "SELECT invoices")
}

func TestErrorResponse(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.PGQuery("SELECT * FROM nope"))
	spans := w.Read(prototest.Cat(prototest.PGErrorResp("42P01", `relation "nope" does not exist`), prototest.PGReady()))
	prototest.WantNames(t, spans, "SELECT nope")
	s := spans[0]
	if s.Status != codes.Error || s.StatusMsg != `relation "nope" does not exist` {
		t.Errorf("status %v %q", s.Status, s.StatusMsg)
	}
	prototest.WantAttrs(t, s, map[string]string{"error.type": "42P01", "db.response.status_code": "42P01"})

	// In an extended batch the server skips to the Sync after an error.
	w.Write(prototest.Cat(prototest.PGParse("", "INSERT INTO users (id) VALUES ($1)"), prototest.PGBind("", "", "1"), prototest.PGExecute(""), prototest.PGSync()))
	spans = w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), prototest.PGErrorResp("23505", "duplicate key value"), prototest.PGReady()))
	prototest.WantNames(t, spans, "INSERT users")
	prototest.WantAttrs(t, spans[0], map[string]string{"error.type": "23505"})

	// An error belongs to its own query only.
	w.Write(prototest.PGQuery("SELECT * FROM users"))
	spans = w.Read(prototest.PGRows(1, "a"))
	prototest.WantNames(t, spans, "SELECT users")
	if spans[0].Status != codes.Unset || attr(spans[0], "error.type") != "" {
		t.Errorf("the error leaked into the next query: %v %q", spans[0].Status, attr(spans[0], "error.type"))
	}
}

func TestLargeResultPastCapture(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.PGQuery("SELECT * FROM events"))
	// 300 rows of 40 bytes, read 4096 bytes at a time: the parser loses
	// the message boundaries past the first 512 bytes of the first read,
	// and only the Ready flag of the last read tells it the answer ended.
	answer := prototest.PGRows(300, strings.Repeat("e", 40))
	spans, at, times := w.ReadChunks(answer, 4096)
	if len(times) < 3 {
		t.Fatalf("the answer fits in %d reads; the test wants several", len(times))
	}
	prototest.WantNames(t, spans, "SELECT events")
	if at[0] != len(times)-1 || !spans[0].End.Equal(times[len(times)-1]) {
		t.Errorf("span ended at read %d (%v), want the last, %d", at[0], spans[0].End, len(times)-1)
	}
	// The tag was past the capture: no row count rather than a wrong one.
	prototest.WantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": ""})

	// The reader is back on a boundary: the next query is read in full.
	w.Write(prototest.PGQuery("SELECT * FROM users"))
	spans = w.Read(prototest.PGRows(2, "u"))
	prototest.WantNames(t, spans, "SELECT users")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "2"})

	// A big answer whose last read is itself past the capture and flagged
	// Ready: the whole answer in one read.
	w.Write(prototest.PGQuery("SELECT * FROM logs"))
	spans = w.Read(prototest.PGRows(100, strings.Repeat("l", 30)))
	prototest.WantNames(t, spans, "SELECT logs")
}

func TestPipelinedQueries(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.Cat(prototest.PGQuery("SELECT * FROM a"), prototest.PGQuery("DELETE FROM b WHERE id = 9")))
	spans := w.Read(prototest.Cat(prototest.PGRows(2, "x"), prototest.PGComplete("DELETE 1"), prototest.PGReady()))
	prototest.WantNames(t, spans, "SELECT a", "DELETE b")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "2"})
	prototest.WantAttrs(t, spans[1], map[string]string{"zerotrace.db.rows_affected": "1", "db.query.text": "DELETE FROM b WHERE id = ?"})
	if spans[0].SpanID == spans[1].SpanID {
		t.Errorf("two queries share span ID %s", spans[0].SpanID)
	}
}

func TestMessageSplitAcrossReads(t *testing.T) {
	// A DataRow of 300 bytes, and the whole answer. Where it is cut
	// decides which skip path is taken; every case must find the
	// CommandComplete after it, which proves the reader landed on the
	// boundary after the row.
	row := prototest.PGDataRow(strings.Repeat("r", 293))
	answer := prototest.Cat(prototest.PGRowDesc("v"), row, prototest.PGComplete("SELECT 1"), prototest.PGReady())
	rowStart := len(prototest.PGRowDesc("v"))
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
			k := prototest.NewProcess()
			var clock int
			w := newWire(k, &clock)
			w.Write(prototest.PGQuery("SELECT v FROM t"))
			var spans []*model.Span
			prev := 0
			for _, cut := range append(c.cuts, len(answer)) {
				got := w.Read(answer[prev:cut])
				if cut != len(answer) && len(got) != 0 {
					t.Fatalf("span before the last read: %v", got)
				}
				spans = append(spans, got...)
				prev = cut
			}
			prototest.WantNames(t, spans, "SELECT t")
			prototest.WantAttrs(t, spans[0], map[string]string{"db.response.returned_rows": "1"})
			if !spans[0].End.Equal(w.Last) {
				t.Errorf("end %v, want the last read %v", spans[0].End, w.Last)
			}
		})
	}

	// A message header cut between reads: its length is unknown, so the
	// reader is lost until a read that ends with ReadyForQuery.
	t.Run("header split", func(t *testing.T) {
		k := prototest.NewProcess()
		var clock int
		w := newWire(k, &clock)
		w.Write(prototest.PGQuery("SELECT v FROM t"))
		if s := w.Read(answer[:rowStart+2]); len(s) != 0 {
			t.Fatalf("early span %v", s)
		}
		prototest.WantNames(t, w.Read(answer[rowStart+2:]), "SELECT t")
	})
}

func TestConnectionBeforeAgent(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	// The tail of an answer to something sent before the agent attached:
	// nothing awaits it.
	if s := w.Read(prototest.Cat(prototest.PGComplete("SELECT 1"), prototest.PGReady())); len(s) != 0 {
		t.Fatalf("spans for an answer with no query: %v", s)
	}
	// No startup seen: the first thing seen is a Query.
	w.Write(prototest.PGQuery("SELECT * FROM items"))
	spans := w.Read(prototest.PGRows(4, "i"))
	prototest.WantNames(t, spans, "SELECT items")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.namespace": "", "db.response.returned_rows": "4", "db.system.name": "postgresql"})
}

func TestTruncatedQueryText(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	// A query longer than the capture: the text is what was seen, marked
	// truncated, and it still pairs with its answer.
	q := "SELECT * FROM items WHERE id IN (" + strings.Repeat("1234, ", 150) + "1)"
	w.Write(prototest.PGQuery(q))
	spans := w.Read(prototest.PGRows(1, "z"))
	prototest.WantNames(t, spans, "SELECT items")
	prototest.WantAttrs(t, spans[0], map[string]string{"zerotrace.truncated": "true"})
	if strings.Contains(attr(spans[0], "db.query.text"), "1234") {
		t.Errorf("literal left in %q", attr(spans[0], "db.query.text"))
	}

	// An extended batch whose Bind carries a parameter bigger than the
	// capture: the Sync is past the 512 bytes, but a batch is written
	// whole, so the batch still counts as one query.
	w.Write(prototest.Cat(prototest.PGParse("", "INSERT INTO blobs (data) VALUES ($1)"), prototest.PGBind("", "", strings.Repeat("b", 2000)),
		prototest.PGExecute(""), prototest.PGSync()))
	spans = w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), prototest.PGComplete("INSERT 0 1"), prototest.PGReady()))
	prototest.WantNames(t, spans, "INSERT blobs")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.query.text": "INSERT INTO blobs (data) VALUES ($1)"})
}

func TestParseCutByCaptureThenBind(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.Cat(prototest.PGParse("", "SELECT * FROM a"), prototest.PGBind("", ""), prototest.PGExecute(""), prototest.PGSync()))
	prototest.WantNames(t, w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), prototest.PGRows(1, "a"))), "SELECT a")
	// The unnamed statement redefined with a text longer than the
	// capture, in a write of its own; Bind/Execute/Sync follow in the
	// next write (a driver that flushes per message does this).
	long := "SELECT * FROM b WHERE id IN (" + strings.Repeat("1, ", 300) + "1)"
	w.Write(prototest.PGParse("", long))
	w.Write(prototest.Cat(prototest.PGBind("", ""), prototest.PGExecute(""), prototest.PGSync()))
	spans := w.Read(prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), prototest.PGRows(1, "b")))
	prototest.WantNames(t, spans, "SELECT b")
	prototest.WantAttrs(t, spans[0], map[string]string{"zerotrace.truncated": "true"})
}

func TestSSLAnswerNotCaptured(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.PGSSLRequest())
	d := w.Segment(protocols.Read, []byte("N"+string(prototest.PGServerHello())))
	d.Data = nil
	prototest.NoPanic(t, "read", func() { w.Send(d) })
}

// FuzzPostgres: whatever a client writes and its server answers, no panic,
// and every span well formed.
func FuzzPostgres(f *testing.F) {
	answer := prototest.PGRows(3, "row")
	f.Add(prototest.PGStartup("user", "u", "database", "d"), prototest.PGServerHello(), true, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.PGQuery("SELECT * FROM t WHERE a = 'x'"), answer, true, uint32(0), uint32(0), uint16(20))
	f.Add(prototest.PGSSLRequest(), []byte("N"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.Cat(prototest.PGParse("", "SELECT $1"), prototest.PGBind("", "", "1"), prototest.PGDescribe('P', ""), prototest.PGExecute(""), prototest.PGSync()),
		prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), answer), true, uint32(3000), uint32(0), uint16(9))
	f.Add(prototest.PGQuery("SELECT 1"), prototest.Cat(prototest.PGErrorResp("42601", "syntax"), prototest.PGReady()), true, uint32(0), uint32(9000), uint16(3))
	f.Add(prototest.PGSSLRequest(), []byte{}, false, uint32(0), uint32(5), uint16(0))
	f.Fuzz(func(t *testing.T, w, r []byte, ready bool, wExtra, rExtra uint32, split uint16) {
		for _, s := range prototest.Exchanges(t, New, w, r, ready, wExtra, rExtra, split) {
			if s.DB.System != "postgresql" {
				t.Fatalf("system %q", s.DB.System)
			}
		}
	})
}
