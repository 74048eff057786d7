package correlate

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// MySQL packets as a server or client sends them: a 3-byte little-endian
// length, a sequence number, the payload.
func myPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func myQuery(q string) []byte { return append([]byte{mysqlQuery}, q...) }

func myOK(affected, status int) []byte {
	return []byte{0x00, byte(affected), 0, byte(status), byte(status >> 8), 0, 0}
}

func myEOF(status int) []byte { return []byte{0xfe, 0, 0, byte(status), byte(status >> 8)} }

// myEndOK is the OK packet with the 0xfe header that ends a result set when
// the client asked for no EOF packets.
func myEndOK(status int) []byte { return []byte{0xfe, 0, 0, byte(status), byte(status >> 8), 0, 0} }

func myErr(code int, state, msg string) []byte {
	b := []byte{0xff, byte(code), byte(code >> 8), '#'}
	return append(append(b, state...), msg...)
}

func myColumn() []byte { return append([]byte{3}, "def"+strings.Repeat("\x00", 20)...) }

func myRow(v string) []byte { return append([]byte{byte(len(v))}, v...) }

func myGreeting(version string) []byte {
	b := append([]byte{0x0a}, version...)
	return append(b, make([]byte, 40)...)
}

// myHandshake is a HandshakeResponse41 with a database.
func myHandshake(user, db string) []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b, mysqlConnectWithDB|mysqlSecureConn)
	b = append(append(b, user...), 0)
	b = append(b, 2, 'p', 'w') // auth response, length-prefixed
	return append(append(b, db...), 0)
}

// myWire drives one MySQL connection through a tracer.
type myWire struct {
	k  *kernelTracer
	at int
}

func (w *myWire) send(dir SockDir, b []byte, ready bool) []*model.Span {
	w.at++
	return conv(w.k.handle(&SockData{PID: 3, TID: 4, FD: 9, Proto: ProtoMySQL, Dir: dir, Ready: ready,
		Time: time.Unix(5000, int64(w.at)*int64(time.Millisecond)), Len: uint32(len(b)), Data: b[:min(len(b), 512)]}))
}

func TestKernelMySQLHandshakeQueryAndOK(t *testing.T) {
	w := &myWire{k: newKernelTracer(&Stats{}, &seqIDs{})}
	w.send(SockRead, myPacket(0, myGreeting("10.11.19-MariaDB")), false)
	w.send(SockWrite, myPacket(1, myHandshake("root", "shop")), false)
	w.send(SockRead, myPacket(2, myOK(0, 2)), false)
	w.send(SockWrite, myPacket(0, myQuery("UPDATE items SET owner = 'x' WHERE id = 7")), false)
	spans := w.send(SockRead, myPacket(1, myOK(3, 2)), false)
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

func TestKernelMySQLResultSets(t *testing.T) {
	for _, classic := range []bool{true, false} {
		w := &myWire{k: newKernelTracer(&Stats{}, &seqIDs{})}
		w.send(SockWrite, myPacket(0, myQuery("SELECT a FROM t")), false)
		resp := cat(myPacket(1, []byte{1}), myPacket(2, myColumn()))
		seq := byte(3)
		if classic {
			resp = cat(resp, myPacket(seq, myEOF(2)))
			seq++
		}
		for i := range 40 {
			resp = cat(resp, myPacket(seq, myRow(strings.Repeat("r", i))))
			seq++
		}
		end := myEndOK(2)
		if classic {
			end = myEOF(2)
		}
		resp = cat(resp, myPacket(seq, end))
		// Cut at every point into two reads: the second ends the response.
		for cut := 1; cut < len(resp); cut += 37 {
			w.send(SockWrite, myPacket(0, myQuery("SELECT a FROM t")), false)
			if first := w.send(SockRead, resp[:cut], false); len(first) != 0 {
				t.Fatalf("classic %v cut %d: early %v", classic, cut, first)
			}
			spans := w.send(SockRead, resp[cut:], true)
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

func TestKernelMySQLErrorPrepareExecute(t *testing.T) {
	w := &myWire{k: newKernelTracer(&Stats{}, &seqIDs{})}
	w.send(SockWrite, myPacket(0, myQuery("SELECT * FROM nope")), false)
	spans := w.send(SockRead, myPacket(1, myErr(1146, "42S02", "Table 'shop.nope' doesn't exist")), false)
	if len(spans) != 1 || spans[0].StatusMsg != "Table 'shop.nope' doesn't exist" || attr(spans[0], "error.type") != "1146" {
		t.Fatalf("error span %v", spans)
	}
	// A prepare: no span, but the statement's text for its executions.
	prep := append([]byte{mysqlStmtPrepare}, "SELECT name FROM users WHERE id = ?"...)
	w.send(SockWrite, myPacket(0, prep), false)
	ok := []byte{0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0}
	if got := w.send(SockRead, cat(myPacket(1, ok), myPacket(2, myColumn()), myPacket(3, myEOF(2)), myPacket(4, myColumn()), myPacket(5, myEOF(2))), false); len(got) != 0 {
		t.Fatalf("prepare made spans %v", got)
	}
	w.send(SockWrite, myPacket(0, []byte{mysqlStmtExecute, 7, 0, 0, 0, 0, 1, 0, 0, 0}), false)
	spans = w.send(SockRead, cat(myPacket(1, []byte{1}), myPacket(2, myColumn()), myPacket(3, myEOF(2)), myPacket(4, myRow("ann")), myPacket(5, myEOF(2))), false)
	if len(spans) != 1 || attr(spans[0], "db.query.text") != "SELECT name FROM users WHERE id = ?" || attr(spans[0], "db.response.returned_rows") != "1" {
		t.Fatalf("execute span %v", spans)
	}
}

// A response the reader lost track of ends at the next command's write,
// at its last read; a SSL request hides the rest of the connection.
func TestKernelMySQLLostAndTLS(t *testing.T) {
	stats := &Stats{}
	w := &myWire{k: newKernelTracer(stats, &seqIDs{})}
	w.send(SockWrite, myPacket(0, myQuery("SELECT blob FROM t")), false)
	big := cat(myPacket(1, []byte{1}), myPacket(2, myColumn()), myPacket(3, myRow(strings.Repeat("b", 250))), myPacket(4, myRow(strings.Repeat("b", 250))))
	w.send(SockRead, append(big, make([]byte, 4000)...), false)
	last := w.at
	spans := w.send(SockWrite, myPacket(0, myQuery("SELECT 1")), false)
	if len(spans) != 1 || !spans[0].End.Equal(time.Unix(5000, int64(last)*int64(time.Millisecond))) || attr(spans[0], "db.response.returned_rows") != "" {
		t.Fatalf("settled %v", spans)
	}
	w2 := &myWire{k: newKernelTracer(stats, &seqIDs{})}
	w2.send(SockRead, myPacket(0, myGreeting("8.0.36")), false)
	sslReq := make([]byte, 32)
	binary.LittleEndian.PutUint32(sslReq, mysqlSSL|mysqlSecureConn)
	w2.send(SockWrite, myPacket(1, sslReq), false)
	if got := w2.send(SockWrite, []byte{0x16, 0x03, 0x01, 0x00, 0x03, 0x01, 0x02, 0x03}, false); len(got) != 0 {
		t.Fatalf("TLS bytes made %v", got)
	}
	w2.send(SockRead, []byte{0x17, 0x03, 0x03, 0, 0}, false)
	if st := w2.k.streams[sockKey{pid: 3, fd: 9}]; st.mysql.op != nil {
		t.Errorf("TLS bytes taken for a command")
	}
}

// MySQL 8's connectors put the query attributes' counts before the text.
func TestKernelMySQLQueryAttributes(t *testing.T) {
	w := &myWire{k: newKernelTracer(&Stats{}, &seqIDs{})}
	w.send(SockWrite, myPacket(0, append([]byte{mysqlQuery, 0, 1}, "DELETE FROM carts WHERE id = 9"...)), false)
	spans := w.send(SockRead, myPacket(1, myOK(1, 2)), false)
	if len(spans) != 1 || spans[0].Name != "DELETE carts" || attr(spans[0], "db.query.text") != "DELETE FROM carts WHERE id = ?" {
		t.Fatalf("spans %v", spans)
	}
}
