// Package dbsql instruments Go's database/sql: one CLIENT span per query or
// exec, whatever the driver, child of the span active on the calling
// goroutine.
package dbsql

import (
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// The probed functions: every query and exec of DB, Conn and Tx goes
// through QueryDC or ExecDC; prepared statements through the Stmt methods
// (Query, QueryRow and Exec call their Context forms). The linker drops
// what a program never calls, so each may be missing on its own.
const (
	QueryDC          = "database/sql.(*DB).queryDC"
	ExecDC           = "database/sql.(*DB).execDC"
	StmtQueryContext = "database/sql.(*Stmt).QueryContext"
	StmtExecContext  = "database/sql.(*Stmt).ExecContext"
)

// The fields of database/sql the programs read.
var (
	// DBConnector is database/sql.DB.connector, the driver.Connector.
	DBConnector = offsets.Field{Struct: "database/sql.DB", Name: "connector"}
	// StmtDB is database/sql.Stmt.db.
	StmtDB = offsets.Field{Struct: "database/sql.Stmt", Name: "db"}
	// StmtQuery is database/sql.Stmt.query, the prepared text.
	StmtQuery = offsets.Field{Struct: "database/sql.Stmt", Name: "query"}
	// DSNConnectorDSN is database/sql.dsnConnector.dsn, the data source
	// name given to sql.Open.
	DSNConnectorDSN = offsets.Field{Struct: "database/sql.dsnConnector", Name: "dsn"}
	// DSNConnectorDriver is database/sql.dsnConnector.driver.
	DSNConnectorDriver = offsets.Field{Struct: "database/sql.dsnConnector", Name: "driver"}
	// DriverResultResi is database/sql.driverResult.resi, the driver's own
	// Result that an exec's Result wraps.
	DriverResultResi = offsets.Field{Struct: "database/sql.driverResult", Name: "resi"}
	// DriverConnCi is database/sql.driverConn.ci, the driver.Conn a call
	// runs on: its type is the real driver's, also behind a wrapper.
	DriverConnCi = offsets.Field{Struct: "database/sql.driverConn", Name: "ci"}
)

// Probe is the database/sql instrumentation.
var Probe = probes.Declare("database/sql", loadDbsql, declare, record)

func declare(s *dbsqlSpecs) probes.Declaration {
	stmts := &probes.Part{Gives: "the spans of prepared statements"}
	// sql.Open's connector; a program that opens its databases otherwise
	// has none (the linker drops the type), and then nothing to lose.
	dsn := &probes.Part{Gives: "server.address, server.port and db.namespace from sql.Open's data source name"}
	rows := &probes.Part{Gives: "the rows an exec affected"}
	conn := &probes.Part{Gives: "db.system.name from the connection's type when a wrapper driver hides the database", Flag: s.ReadConnType}
	return probes.Declaration{
		Uprobes: []probes.Uprobe{
			{Symbol: QueryDC, Entry: s.QueryDcEnter, Return: s.QueryReturn, Optional: true},
			{Symbol: ExecDC, Entry: s.ExecDcEnter, Return: s.ExecReturn, Optional: true},
			{Symbol: StmtQueryContext, Entry: s.StmtQueryEnter, Return: s.QueryReturn, Optional: true, Part: stmts},
			{Symbol: StmtExecContext, Entry: s.StmtExecEnter, Return: s.ExecReturn, Optional: true, Part: stmts},
		},
		Reads: []probes.Read{
			{Field: offsets.GoroutineID, Offset: s.OffG_goid, Size: probes.Word},
			{Field: offsets.GoroutineParentID, Offset: s.OffG_parentGoid, Size: probes.Word},
			{Field: DBConnector, Offset: s.OffDbConnector, Size: probes.Iface},
			{Field: StmtDB, Offset: s.OffStmtDb, Size: probes.Word, Part: stmts},
			{Field: StmtQuery, Offset: s.OffStmtQuery, Size: probes.String, Part: stmts},
			{Field: DSNConnectorDSN, Offset: s.OffDsnConnectorDsn, Size: probes.String, Part: dsn},
			{Field: DSNConnectorDriver, Offset: s.OffDsnConnectorDriver, Size: probes.Iface, Part: dsn},
			{Field: DriverResultResi, Offset: s.OffDriverResultResi, Size: probes.Iface, Part: rows},
			{Field: DriverConnCi, Offset: s.OffDriverConnCi, Size: probes.Word, Part: conn},
		},
	}
}
