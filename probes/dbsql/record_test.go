package dbsql

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/events/eventstest"
)

// dbSpan maps q as the correlator would, attributes included.
func dbSpan(q *Query) *model.Span {
	s := q.Span()
	semconv.Apply(s, nil)
	return s
}

func TestDSNServer(t *testing.T) {
	for _, c := range []struct {
		dsn, host string
		port      int
		db        string
	}{
		{"postgres://zt:pw@127.0.0.1:5433/shop?sslmode=disable", "127.0.0.1", 5433, "shop"},
		{"postgresql://u@[::1]:5432/x", "::1", 5432, "x"},
		{"postgres://db.internal/orders", "db.internal", 0, "orders"},
		{"host=10.0.0.7 port=6432 user=app password='s3cret' dbname=billing", "10.0.0.7", 6432, "billing"},
		{"host=/var/run/postgresql dbname=x", "", 0, "x"},
		{"/tmp/app.db", "", 0, ""},
		{"file:test.db?cache=shared", "", 0, ""},
	} {
		host, port, db := dsnServer(c.dsn)
		if host != c.host || port != c.port || db != c.db {
			t.Errorf("dsnServer(%q) = %q, %d, %q; want %q, %d, %q", c.dsn, host, port, db, c.host, c.port, c.db)
		}
	}
}

func TestDBSystem(t *testing.T) {
	for typ, want := range map[string]string{
		"*modernc.org/sqlite.Driver":                  "sqlite",
		"*github.com/mattn/go-sqlite3.SQLiteDriver":   "sqlite",
		"*github.com/lib/pq.Driver":                   "postgresql",
		"*github.com/jackc/pgx/v5/stdlib.Driver":      "postgresql",
		"*github.com/go-sql-driver/mysql.MySQLDriver": "mysql",
		"":           "other_sql",
		"*main.fake": "other_sql",
	} {
		if got := dbSystem(typ); got != want {
			t.Errorf("dbSystem(%q) = %q, want %q", typ, got, want)
		}
	}
}

func TestDBSpan(t *testing.T) {
	start := time.Unix(100, 0)
	s := dbSpan(&Query{
		Start: start, End: start.Add(time.Millisecond), Call: ExecCall,
		Query:     "INSERT INTO customers (id, email) VALUES (42, 'a@b.example')",
		Connector: "database/sql.dsnConnector", Driver: "*github.com/lib/pq.Driver",
		DSNs: [2]string{"postgres://zt:pw@127.0.0.1:5433/shop"},
	})
	attrs := map[string]string{}
	for _, kv := range s.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{
		"db.system.name":     "postgresql",
		"db.query.text":      "INSERT INTO customers (id, email) VALUES (?, ?)",
		"db.operation.name":  "INSERT",
		"db.collection.name": "customers",
		"server.address":     "127.0.0.1",
		"server.port":        "5433",
		"db.namespace":       "shop",
	}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("%s = %q, want %q", k, attrs[k], v)
		}
	}
	if s.Name != "INSERT customers" || s.Status != codes.Unset {
		t.Errorf("name %q status %v", s.Name, s.Status)
	}

	failed := dbSpan(&Query{Query: "SELECT * FROM missing WHERE id = 7", Driver: "*modernc.org/sqlite.Driver",
		Err: true, ErrType: "*modernc.org/sqlite.Error", ErrStrings: [3]string{"no such table: missing"}})
	if failed.Status != codes.Error || failed.StatusMsg != "no such table: missing" {
		t.Errorf("failed span: status %v %q", failed.Status, failed.StatusMsg)
	}
	pq := dbSpan(&Query{Query: "SELECT 1", Err: true, ErrType: "*github.com/lib/pq.Error",
		ErrStrings: [3]string{"ERROR", `relation "missing" does not exist`, "junk"}})
	if pq.StatusMsg != `relation "missing" does not exist` {
		t.Errorf("lib/pq error message %q", pq.StatusMsg)
	}
	opaque := dbSpan(&Query{Query: "SELECT 1", Err: true, ErrType: "*example.com/x.Err", ErrStrings: [3]string{"junk"}})
	if opaque.StatusMsg != "*example.com/x.Err" {
		t.Errorf("an error type of unknown layout gave %q", opaque.StatusMsg)
	}
}

func TestDBSpanRowsAffected(t *testing.T) {
	for _, c := range []struct {
		typ   string
		words [2]int64
		want  string
	}{
		{"database/sql/driver.RowsAffected", [2]int64{3, 99}, "3"},
		{"*modernc.org/sqlite.result", [2]int64{17, 2}, "2"},
		{"*example.com/unknown.result", [2]int64{5, 5}, ""},
	} {
		s := dbSpan(&Query{Query: "UPDATE t SET a = 1", Call: ExecCall, ResultType: c.typ, ResultWords: c.words})
		got := ""
		for _, kv := range s.Attributes {
			if kv.Key == "zerotrace.db.rows_affected" {
				got = kv.Value.Emit()
			}
		}
		if got != c.want {
			t.Errorf("%s: rows affected %q, want %q", c.typ, got, c.want)
		}
	}
}

// A program that registers its own driver type around the real one (a
// hooks or instrumentation wrapper) still gets the database's name, from
// the connection's type; wrapped connections leave the connector's.
func TestDBSystemBehindWrapper(t *testing.T) {
	for _, c := range []struct {
		q    Query
		want string
	}{
		{Query{Connector: dsnConnector, Driver: "*main.hooksDriver", Conn: "*modernc.org/sqlite.conn"}, "sqlite"},
		{Query{Connector: "*main.connector", Conn: "*github.com/jackc/pgx/v5/stdlib.Conn"}, "postgresql"},
		{Query{Connector: dsnConnector, Driver: "*modernc.org/sqlite.Driver", Conn: "*example.com/otelsql.otConn"}, "sqlite"},
		{Query{Connector: dsnConnector, Driver: "*main.hooksDriver", Call: StmtQueryCall}, "other_sql"},
	} {
		c.q.Query = "SELECT 1"
		s := dbSpan(&c.q)
		got := ""
		for _, kv := range s.Attributes {
			if kv.Key == "db.system.name" {
				got = kv.Value.Emit()
			}
		}
		if got != c.want {
			t.Errorf("connector %q driver %q conn %q: db.system.name %q, want %q", c.q.Connector, c.q.Driver, c.q.Conn, got, c.want)
		}
	}
}

// BenchmarkDBQueryRecord takes one record of an exec from the ring
// buffer's bytes through the decoder and the correlator to the sinks'
// release (what export.Fanout does once every sink exported it).
func BenchmarkDBQueryRecord(b *testing.B) {
	c := eventstest.Correlator()
	c.Register(model.NewProcess(7, "/x", "", "go1.26.8"))
	var e dbsqlDbQueryEvent
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = record.Type, 7, 3_000
	e.StartNs, e.Goid = 1_000, 42
	e.Ids.TraceId[0], e.Ids.SpanId[0], e.Ids.ParentId[0] = 1, 2, 3
	e.Call = uint8(ExecCall) // the record keeps the enum in a byte
	e.QueryLen = eventstest.PutString(e.Query[:], "UPDATE orders SET state = 'paid' WHERE id = 42")
	e.DsnLen[0] = eventstest.PutString(e.Dsn[0][:], "postgres://zt:pw@127.0.0.1:5433/shop?sslmode=disable")
	e.ConnectorType, e.DriverType, e.ResultType = 1, 2, 3
	e.ResultWords = [2]int64{1, 0}
	names := map[uint64]string{1: dsnConnector, 2: "*github.com/lib/pq.Driver", 3: "database/sql/driver.RowsAffected"}
	d := &events.Decoder{Clock: events.FixedClock(0), Namer: func(_ uint32, itab uint64) string { return names[itab] }}
	buf := eventstest.Raw(&e)
	b.ReportAllocs()
	for b.Loop() {
		ev, err := record.Decode(buf, d)
		if err != nil {
			b.Fatal(err)
		}
		s := c.Handle(ev)
		s.Hold(1)
		s.Release()
	}
}
