// Package dbsql instruments Go's database/sql: one CLIENT span per query or
// exec, whatever the driver, child of the span active on the calling
// goroutine.
package dbsql

import (
	"github.com/cilium/ebpf"

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

// Where the calls end (see bpf/dbsql/probe.c): each runs once the call is
// done, on the caller's goroutine.
const (
	// QueryEnd: a query of QueryDC succeeded.
	QueryEnd = "database/sql.(*Rows).initContextClose"
	// ExecEnd is ExecDC's deferred release(err).
	ExecEnd = "database/sql.(*DB).execDC.func1"
	// StmtQueryEnd and StmtExecEnd are the Stmt methods' deferred
	// s.closemu.RUnlock().
	StmtQueryEnd = "database/sql.(*Stmt).QueryContext.deferwrap1"
	StmtExecEnd  = "database/sql.(*Stmt).ExecContext.deferwrap1"
)

// QueryReleases are the releaseConn(err) functions QueryDC calls when a
// query fails: DB's, Tx's and Conn's method values.
var QueryReleases = []string{
	"database/sql.(*driverConn).releaseConn-fm",
	"database/sql.(*Tx).closemuRUnlockRelease-fm",
	"database/sql.(*Conn).closemuRUnlockCondReleaseConn-fm",
}

// errorStringError is fun[0] of the itab of an error made by errors.New,
// such as driver.ErrBadConn.
const errorStringError = "errors.(*errorString).Error"

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
	// Ends read from a frame (see probes.Frame), each with the RETs of its
	// function as a fallback.
	execEnd := &probes.Part{Gives: "at the entry of its deferred release (emulated)"}
	execRets := &probes.Part{Gives: "execs end on the RET instructions of " + ExecDC + " (single-stepped)", Instead: execEnd}
	stmtQueryEnd := &probes.Part{Gives: "at the entry of its deferred unlock (emulated)", Requires: []*probes.Part{stmts}}
	stmtQueryRets := &probes.Part{Gives: "prepared queries end on the RET instructions of " + StmtQueryContext + " (single-stepped)",
		Instead: stmtQueryEnd, Requires: []*probes.Part{stmts}}
	stmtExecEnd := &probes.Part{Gives: "at the entry of its deferred unlock (emulated)", Requires: []*probes.Part{stmts}}
	stmtExecRets := &probes.Part{Gives: "prepared execs end on the RET instructions of " + StmtExecContext + " (single-stepped)",
		Instead: stmtExecEnd, Requires: []*probes.Part{stmts}}
	var ups []probes.Uprobe
	// The ends before the starts (see probes.Uprobe).
	ups = append(ups, probes.Uprobe{Symbol: QueryEnd, Entry: s.QueryEnd, Optional: true})
	for _, sym := range QueryReleases {
		ups = append(ups, probes.Uprobe{Symbol: sym, Entry: s.QueryRelease, Optional: true})
	}
	// sql.Open's connector; a program that opens its databases otherwise
	// has none (the linker drops the type), and then nothing to lose.
	dsn := &probes.Part{Gives: "server.address, server.port and db.namespace from sql.Open's data source name"}
	rows := &probes.Part{Gives: "the rows an exec affected"}
	conn := &probes.Part{Gives: "db.system.name from the connection's type when a wrapper driver hides the database", Flag: s.ReadConnType}
	ups = append(ups,
		probes.Uprobe{Symbol: ExecEnd, Entry: s.ExecEnd, Optional: true, Part: execEnd},
		probes.Uprobe{Symbol: ExecDC, Return: s.ExecReturn, Optional: true, Part: execRets},
		probes.Uprobe{Symbol: StmtQueryEnd, Entry: s.StmtQueryEnd, Optional: true, Part: stmtQueryEnd},
		probes.Uprobe{Symbol: StmtQueryContext, Return: s.QueryReturn, Optional: true, Part: stmtQueryRets},
		probes.Uprobe{Symbol: StmtExecEnd, Entry: s.StmtExecEnd, Optional: true, Part: stmtExecEnd},
		probes.Uprobe{Symbol: StmtExecContext, Return: s.ExecReturn, Optional: true, Part: stmtExecRets},

		probes.Uprobe{Symbol: QueryDC, Entry: s.QueryDcEnter, Optional: true},
		probes.Uprobe{Symbol: ExecDC, Entry: s.ExecDcEnter, Optional: true},
		probes.Uprobe{Symbol: StmtQueryContext, Entry: s.StmtQueryEnter, Optional: true, Part: stmts},
		probes.Uprobe{Symbol: StmtExecContext, Entry: s.StmtExecEnter, Optional: true, Part: stmts},
	)
	return probes.Declaration{
		Uprobes: ups,
		Frames: []probes.Frame{
			{Symbol: ExecDC, Results: []*ebpf.VariableSpec{s.OffExecRes, nil, s.OffExecErr},
				Deferred: ExecEnd, Captured: s.ExecClosureErr, CapturedWord: 2, Part: execEnd},
			{Symbol: StmtQueryContext, Results: []*ebpf.VariableSpec{nil, s.OffStmtqErr},
				Start: s.StmtqStart, End: s.StmtqEnd, Part: stmtQueryEnd},
			{Symbol: StmtExecContext, Results: []*ebpf.VariableSpec{s.OffStmteRes, nil, s.OffStmteErr},
				Start: s.StmteStart, End: s.StmteEnd, Part: stmtExecEnd},
		},
		Funcs: []probes.Func{
			{Symbol: errorStringError, Addr: s.ErrorstringErrorFn, Optional: true},
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
