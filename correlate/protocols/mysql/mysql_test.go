package mysql

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
)

// myWire drives one MySQL connection through a parser.
type myWire struct {
	w  *prototest.Wire
	at int
}

func newMyWire(p *prototest.Process) *myWire {
	env := &prototest.Env{P: p, C: protocols.Conn{Source: model.SourceKernel}}
	return &myWire{w: &prototest.Wire{Parser: New(env), Env: env}}
}

func (w *myWire) send(dir protocols.Dir, b []byte, ready bool) []*model.Span {
	w.at++
	return w.w.Send(&protocols.Segment{TID: 4, Dir: dir, Ready: ready,
		Time: time.Unix(5000, int64(w.at)*int64(time.Millisecond)), Len: uint32(len(b)), Data: b[:min(len(b), 512)]})
}

func (w *myWire) parser() *parser { return w.w.Parser.(*parser) }

var attr = prototest.Attr

func TestHandshakeQueryAndOK(t *testing.T) {
	w := newMyWire(prototest.NewProcess())
	w.send(protocols.Read, prototest.MyPacket(0, prototest.MyGreeting("10.11.19-MariaDB")), false)
	w.send(protocols.Write, prototest.MyPacket(1, prototest.MyHandshake("root", "shop")), false)
	w.send(protocols.Read, prototest.MyPacket(2, prototest.MyOK(0, 2)), false)
	w.send(protocols.Write, prototest.MyPacket(0, prototest.MyQuery("UPDATE items SET owner = 'x' WHERE id = 7")), false)
	spans := w.send(protocols.Read, prototest.MyPacket(1, prototest.MyOK(3, 2)), false)
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name != "UPDATE items" || attr(s, "db.system.name") != "mysql" || attr(s, "db.namespace") != "shop" ||
		attr(s, "db.query.text") != "UPDATE items SET owner = ? WHERE id = ?" || attr(s, "zerotrace.db.rows_affected") != "3" ||
		attr(s, "zerotrace.db.server_version") != "10.11.19-MariaDB" {
		t.Errorf("span %q: %v", s.Name, s.Attributes)
	}
}

func TestResultSets(t *testing.T) {
	for _, classic := range []bool{true, false} {
		w := newMyWire(prototest.NewProcess())
		w.send(protocols.Write, prototest.MyPacket(0, prototest.MyQuery("SELECT a FROM t")), false)
		resp := prototest.Cat(prototest.MyPacket(1, []byte{1}), prototest.MyPacket(2, prototest.MyColumn()))
		seq := byte(3)
		if classic {
			resp = prototest.Cat(resp, prototest.MyPacket(seq, prototest.MyEOF(2)))
			seq++
		}
		for i := range 40 {
			resp = prototest.Cat(resp, prototest.MyPacket(seq, prototest.MyRow(strings.Repeat("r", i))))
			seq++
		}
		end := prototest.MyEndOK(2)
		if classic {
			end = prototest.MyEOF(2)
		}
		resp = prototest.Cat(resp, prototest.MyPacket(seq, end))
		// Cut at every point into two reads: the second ends the response.
		for cut := 1; cut < len(resp); cut += 37 {
			w.send(protocols.Write, prototest.MyPacket(0, prototest.MyQuery("SELECT a FROM t")), false)
			if first := w.send(protocols.Read, resp[:cut], false); len(first) != 0 {
				t.Fatalf("classic %v cut %d: early %v", classic, cut, first)
			}
			spans := w.send(protocols.Read, resp[cut:], true)
			if len(spans) != 1 {
				t.Fatalf("classic %v cut %d: %d spans", classic, cut, len(spans))
			}
			rows := attr(spans[0], "db.response.returned_rows")
			if rows != "40" && rows != "" || !spans[0].End.Equal(time.Unix(5000, int64(w.at)*int64(time.Millisecond))) {
				t.Errorf("classic %v cut %d: rows %q, end %v", classic, cut, rows, spans[0].End)
			}
		}
	}
}

func TestErrorPrepareExecute(t *testing.T) {
	w := newMyWire(prototest.NewProcess())
	w.send(protocols.Write, prototest.MyPacket(0, prototest.MyQuery("SELECT * FROM nope")), false)
	spans := w.send(protocols.Read, prototest.MyPacket(1, prototest.MyErr(1146, "42S02", "Table 'shop.nope' doesn't exist")), false)
	if len(spans) != 1 || spans[0].StatusMsg != "Table 'shop.nope' doesn't exist" || attr(spans[0], "error.type") != "1146" {
		t.Fatalf("error span %v", spans)
	}
	// A prepare: no span, but the statement's text for its executions.
	prep := append([]byte{mysqlStmtPrepare}, "SELECT name FROM users WHERE id = ?"...)
	w.send(protocols.Write, prototest.MyPacket(0, prep), false)
	ok := []byte{0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0}
	if got := w.send(protocols.Read, prototest.Cat(prototest.MyPacket(1, ok), prototest.MyPacket(2, prototest.MyColumn()), prototest.MyPacket(3, prototest.MyEOF(2)), prototest.MyPacket(4, prototest.MyColumn()), prototest.MyPacket(5, prototest.MyEOF(2))), false); len(got) != 0 {
		t.Fatalf("prepare made spans %v", got)
	}
	w.send(protocols.Write, prototest.MyPacket(0, []byte{mysqlStmtExecute, 7, 0, 0, 0, 0, 1, 0, 0, 0}), false)
	spans = w.send(protocols.Read, prototest.Cat(prototest.MyPacket(1, []byte{1}), prototest.MyPacket(2, prototest.MyColumn()), prototest.MyPacket(3, prototest.MyEOF(2)), prototest.MyPacket(4, prototest.MyRow("ann")), prototest.MyPacket(5, prototest.MyEOF(2))), false)
	if len(spans) != 1 || attr(spans[0], "db.query.text") != "SELECT name FROM users WHERE id = ?" || attr(spans[0], "db.response.returned_rows") != "1" {
		t.Fatalf("execute span %v", spans)
	}
}

// A response the reader lost track of ends at the next command's write,
// at its last read; a SSL request hides the rest of the connection.
func TestLostAndTLS(t *testing.T) {
	proc := prototest.NewProcess()
	w := newMyWire(proc)
	w.send(protocols.Write, prototest.MyPacket(0, prototest.MyQuery("SELECT blob FROM t")), false)
	big := prototest.Cat(prototest.MyPacket(1, []byte{1}), prototest.MyPacket(2, prototest.MyColumn()), prototest.MyPacket(3, prototest.MyRow(strings.Repeat("b", 250))), prototest.MyPacket(4, prototest.MyRow(strings.Repeat("b", 250))))
	w.send(protocols.Read, append(big, make([]byte, 4000)...), false)
	last := w.at
	spans := w.send(protocols.Write, prototest.MyPacket(0, prototest.MyQuery("SELECT 1")), false)
	if len(spans) != 1 || !spans[0].End.Equal(time.Unix(5000, int64(last)*int64(time.Millisecond))) || attr(spans[0], "db.response.returned_rows") != "" {
		t.Fatalf("settled %v", spans)
	}
	w2 := newMyWire(proc)
	w2.send(protocols.Read, prototest.MyPacket(0, prototest.MyGreeting("8.0.36")), false)
	sslReq := make([]byte, 32)
	binary.LittleEndian.PutUint32(sslReq, mysqlSSL|mysqlSecureConn)
	w2.send(protocols.Write, prototest.MyPacket(1, sslReq), false)
	if got := w2.send(protocols.Write, []byte{0x16, 0x03, 0x01, 0x00, 0x03, 0x01, 0x02, 0x03}, false); len(got) != 0 {
		t.Fatalf("TLS bytes made %v", got)
	}
	w2.send(protocols.Read, []byte{0x17, 0x03, 0x03, 0, 0}, false)
	if w2.parser().op != nil {
		t.Errorf("TLS bytes taken for a command")
	}
}

// MySQL 8's connectors put the query attributes' counts before the text.
func TestQueryAttributes(t *testing.T) {
	w := newMyWire(prototest.NewProcess())
	w.send(protocols.Write, prototest.MyPacket(0, append([]byte{mysqlQuery, 0, 1}, "DELETE FROM carts WHERE id = 9"...)), false)
	spans := w.send(protocols.Read, prototest.MyPacket(1, prototest.MyOK(1, 2)), false)
	if len(spans) != 1 || spans[0].Name != "DELETE carts" || attr(spans[0], "db.query.text") != "DELETE FROM carts WHERE id = ?" {
		t.Fatalf("spans %v", spans)
	}
}

// FuzzMySQL: whatever a client writes and its server answers, no panic,
// and every span well formed.
func FuzzMySQL(f *testing.F) {
	f.Add(prototest.MyPacket(0, prototest.MyQuery("SELECT * FROM t WHERE a = 'x'")), prototest.Cat(prototest.MyPacket(1, []byte{1}), prototest.MyPacket(2, prototest.MyColumn()),
		prototest.MyPacket(3, prototest.MyEOF(0)), prototest.MyPacket(4, prototest.MyRow("a")), prototest.MyPacket(5, prototest.MyEOF(0))), true, uint32(0), uint32(0), uint16(11))
	f.Add(prototest.MyPacket(0, prototest.MyQuery("INSERT INTO t VALUES (1)")), prototest.MyPacket(1, prototest.MyOK(1, 0)), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.MyPacket(0, []byte{0x17, 1, 0, 0, 0}), prototest.MyPacket(1, prototest.MyErr(1146, "42S02", "no such table")), false, uint32(0), uint32(0), uint16(4))
	f.Add(prototest.MyPacket(1, prototest.MyHandshake("root", "shop")), prototest.MyPacket(0, prototest.MyGreeting("8.0.36")), false, uint32(0), uint32(0), uint16(0))
	f.Fuzz(func(t *testing.T, w, r []byte, ready bool, wExtra, rExtra uint32, split uint16) {
		for _, s := range prototest.Exchanges(t, New, w, r, ready, wExtra, rExtra, split) {
			if s.DB.System != "mysql" {
				t.Fatalf("system %q", s.DB.System)
			}
		}
	})
}
