package dbsql

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"github.com/zerotrace/zerotrace/probes/events"
)

// record is the probe's ring-buffer record, struct db_query_event
// (bpf/dbsql/record.h).
var record = events.Record{
	Type:    uint8(dbsqlDbQueryRecordEVENT_DB_QUERY),
	Name:    "db_query_event",
	MinSize: int(unsafe.Sizeof(dbsqlDbQueryEvent{})),
	Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
		// The query stays on the stack: the span, from the pool, is all a
		// record allocates besides its strings.
		var q Query
		decodeInto(&q, (*dbsqlDbQueryEvent)(unsafe.Pointer(&raw[0])), d)
		return q.Span(), nil
	},
}

// truncQuery is the bit of db_query_event.truncated for the query text.
const truncQuery = uint8(dbsqlDbTruncationDB_TRUNC_QUERY)

// Call says which database/sql entry point a Query went through (enum
// db_call in bpf/dbsql/record.h).
type Call = dbsqlDbCall

// database/sql entry points.
const (
	QueryCall     = dbsqlDbCallDB_CALL_QUERY      // Query*, QueryRow* of DB, Conn, Tx
	ExecCall      = dbsqlDbCallDB_CALL_EXEC       // Exec* of DB, Conn, Tx
	StmtQueryCall = dbsqlDbCallDB_CALL_STMT_QUERY // Stmt Query*, QueryRow*
	StmtExecCall  = dbsqlDbCallDB_CALL_STMT_EXEC  // Stmt Exec*
)

// Query is one query or exec made through Go's database/sql.
type Query struct {
	PID         uint32
	GoroutineID uint64
	Start, End  time.Time
	IDs         model.SpanIDs
	Call        Call

	Query          string // as sent, literals included: sanitized here
	QueryTruncated bool

	// Connector and Driver name the types behind DB.connector and, for
	// sql.Open's connector, its driver ("" when unknown). DSNs are the
	// strings where the connectors dsnAt knows keep their data source
	// name; they mean nothing for other connectors.
	Connector, Driver string
	DSNs              [2]string
	// Conn names the type of the connection the call ran on (a
	// driver.Conn), "" for prepared statements or when unknown: the real
	// driver's type even behind a wrapper driver or connector.
	Conn string

	// ResultType names the driver's Result of an exec ("" when none or
	// unknown); ResultWords are its first two words, which hold the rows
	// affected for the types rowsAffectedAt knows.
	ResultType  string
	ResultWords [2]int64

	Err     bool
	ErrType string // the returned error's dynamic type, "" when unknown
	// ErrStrings are the strings found at the offsets errMessageAt knows
	// in the error's struct (0, 32, 48); one is the message for the error
	// types it lists, and nothing for the others.
	ErrStrings [3]string
}

// dsnConnector is database/sql's connector for sql.Open, with drivers
// that have no connector of their own.
const dsnConnector = "database/sql.dsnConnector"

// dsnAt says, for connectors that keep their data source name as it was
// given, which of Query.DSNs holds it.
var dsnAt = map[string]int{
	dsnConnector: 0, // dsn string, driver driver.Driver
	"*github.com/jackc/pgx/v5/stdlib.driverConnector": 1, // driver *Driver, name string
}

// errMessageAt says, for error types whose message field is known, which
// of Query.ErrStrings holds it.
var errMessageAt = map[string]int{
	"*errors.errorString":                     0, // s string
	"*fmt.wrapError":                          0, // msg string
	"*fmt.wrapErrors":                         0,
	"*modernc.org/sqlite.Error":               0, // msg string
	"*github.com/lib/pq.Error":                1, // Severity, Code, Message
	"*github.com/jackc/pgx/v5/pgconn.PgError": 2, // Severity, SeverityUnlocalized, Code, Message
}

// rowsAffectedAt says, for driver Result types whose layout is known, which
// of Query.ResultWords is the number of rows affected.
var rowsAffectedAt = map[string]int{
	"database/sql/driver.RowsAffected": 0, // int64 (lib/pq, pgx)
	"*modernc.org/sqlite.result":       1, // lastInsertID, rowsAffected
}

// dbSystem maps a driver or connector type to db.system.name.
func dbSystem(typ string) string {
	t := strings.ToLower(typ)
	switch {
	case strings.Contains(t, "sqlite"):
		return "sqlite"
	case strings.Contains(t, "lib/pq"), strings.Contains(t, "jackc/pgx"), strings.Contains(t, "postgres"):
		return "postgresql"
	case strings.Contains(t, "mysql"):
		return "mysql"
	case strings.Contains(t, "mssql"), strings.Contains(t, "sqlserver"):
		return "microsoft.sql_server"
	case strings.Contains(t, "clickhouse"):
		return "clickhouse"
	case strings.Contains(t, "godror"), strings.Contains(t, "oracle"):
		return "oracle.db"
	}
	return "other_sql"
}

// system is the query's db.system.name: from the connection's type, which
// is the real driver's unless the connections are wrapped too, else from
// the connector's, or sql.Open's driver's.
func (q *Query) system() string {
	if s := systems.get(q.Conn, dbSystem); s != "other_sql" {
		return s
	}
	typ := q.Connector
	if typ == dsnConnector || typ == "" {
		typ = q.Driver
	}
	return systems.get(typ, dbSystem)
}

// dsnServer finds the server address, port and database name in a data
// source name: a URL (postgres://user:pw@host:port/db?…) or key=value pairs
// (host=… port=… dbname=…). Passwords are never returned.
func dsnServer(dsn string) (host string, port int, db string) {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.Host != "" {
		h, p, err := net.SplitHostPort(u.Host)
		if err != nil {
			h = u.Host
		}
		port, _ = strconv.Atoi(p)
		return strings.Trim(h, "[]"), port, strings.TrimPrefix(u.Path, "/")
	}
	if !strings.Contains(dsn, "=") {
		return "", 0, "" // a file name or an opaque string
	}
	for f := range strings.FieldsSeq(dsn) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, "'")
		switch strings.ToLower(k) {
		case "host":
			if !strings.HasPrefix(v, "/") { // a unix socket directory
				host = v
			}
		case "port":
			port, _ = strconv.Atoi(v)
		case "dbname", "database":
			db = v
		}
	}
	return host, port, db
}

// Span returns the call's CLIENT span, taken from the span pool
// (model.NewSpan), following the OpenTelemetry database semantic
// conventions. The query text is always sanitized: literals become '?',
// whatever the redaction settings.
func (q *Query) Span() *model.Span {
	system := q.system()
	s := model.NewSpan()
	d := s.UseDB(system)
	x := statements.get(q.Query, sanitized)
	d.Query, d.Operation, d.Collection = x.Query, x.Operation, x.Collection
	if i, ok := dsnAt[q.Connector]; ok && system != "sqlite" {
		p := servers.get(q.DSNs[i], dsnParsed)
		d.ServerAddress, d.ServerPort, d.Namespace = p.host, p.port, p.db
	}
	if i, ok := rowsAffectedAt[q.ResultType]; ok && !q.Err && q.ResultWords[i] >= 0 {
		d.RowsAffected = q.ResultWords[i]
	}
	d.Prepared = q.Call == StmtQueryCall || q.Call == StmtExecCall
	s.Kind = trace.SpanKindClient
	s.Start, s.End = q.Start, q.End
	s.PID = q.PID
	s.Truncated = q.QueryTruncated
	if q.Err {
		s.Failure = model.Failure{Failed: true, Type: q.ErrType}
		if i, ok := errMessageAt[q.ErrType]; ok && q.ErrStrings[i] != "" {
			s.Failure.Message = q.ErrStrings[i]
		}
	}
	s.SetIDs(q.IDs)
	return s
}

// memoSize bounds each memo: past it a memo starts afresh.
const memoSize = 256

// memo remembers what a function gave for the strings it was given. A
// program uses a few statements, data source names and drivers over and
// over, and sanitizing a statement, parsing a data source name or
// lowering a type name allocates; a decoded record then costs none of
// that.
type memo[V any] struct {
	mu sync.Mutex
	m  map[string]V
}

func (m *memo[V]) get(key string, f func(string) V) V {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[key]
	if !ok {
		v = f(key)
		if m.m == nil || len(m.m) >= memoSize {
			m.m = make(map[string]V, memoSize)
		}
		// A key of its own: a decoded string shares its memory with the
		// record's other strings, a data source name among them.
		m.m[strings.Clone(key)] = v
	}
	return v
}

var (
	statements memo[model.DB] // Query, Operation, Collection by text
	servers    memo[dsnParts]
	systems    memo[string]
)

type dsnParts struct {
	host string
	port int
	db   string
}

func sanitized(text string) model.DB {
	var d model.DB
	semconv.SetSQL(&d, text)
	return d
}

func dsnParsed(dsn string) dsnParts {
	var p dsnParts
	p.host, p.port, p.db = dsnServer(dsn)
	return p
}

// decodeInto fills q from the record; its strings share one allocation.
func decodeInto(q *Query, e *dbsqlDbQueryEvent, d *events.Decoder) {
	clock := d.Clock
	*q = Query{
		PID:            e.Hdr.Pid,
		GoroutineID:    e.Goid,
		Start:          clock.Wall(e.StartNs),
		End:            clock.Wall(e.Hdr.TsNs),
		IDs:            events.SpanIDs(e.Ids.TraceId, e.Ids.SpanId, e.Ids.ParentId),
		Call:           Call(e.Call),
		QueryTruncated: e.Truncated&truncQuery != 0,
		Err:            e.ErrType != 0,
	}
	events.CStrings(
		events.CField{Array: e.Query[:], Len: e.QueryLen, Dst: &q.Query},
		events.CField{Array: e.Dsn[0][:], Len: e.DsnLen[0], Dst: &q.DSNs[0]},
		events.CField{Array: e.Dsn[1][:], Len: e.DsnLen[1], Dst: &q.DSNs[1]},
		events.CField{Array: e.ErrMsg[0][:], Len: e.ErrLen[0], Dst: &q.ErrStrings[0]},
		events.CField{Array: e.ErrMsg[1][:], Len: e.ErrLen[1], Dst: &q.ErrStrings[1]},
		events.CField{Array: e.ErrMsg[2][:], Len: e.ErrLen[2], Dst: &q.ErrStrings[2]},
	)
	if d.Namer != nil {
		q.Connector = d.Name(e.Hdr.Pid, e.ConnectorType)
		q.Driver = d.Name(e.Hdr.Pid, e.DriverType)
		if e.ConnType != 0 {
			q.Conn = d.Name(e.Hdr.Pid, e.ConnType)
		}
		q.ErrType = d.Name(e.Hdr.Pid, e.ErrType)
		if e.ResultType != 0 {
			q.ResultType = d.Name(e.Hdr.Pid, e.ResultType)
			q.ResultWords = e.ResultWords
		}
	}
}
