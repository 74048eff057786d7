// Package dbsql instruments Go's database/sql: one CLIENT span per query or
// exec, whatever the driver, child of the span active on the calling
// goroutine.
package dbsql

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// The probed functions: every query and exec of DB, Conn and Tx goes
// through QueryDC or ExecDC; prepared statements through the Stmt methods
// (Query, QueryRow and Exec call their Context forms).
const (
	QueryDC          = "database/sql.(*DB).queryDC"
	ExecDC           = "database/sql.(*DB).execDC"
	StmtQueryContext = "database/sql.(*Stmt).QueryContext"
	StmtExecContext  = "database/sql.(*Stmt).ExecContext"
)

var requiredFields = []offsets.Field{
	offsets.GoroutineID, offsets.GoroutineParentID,
	offsets.SQLDBConnector, offsets.SQLStmtDB, offsets.SQLStmtQuery,
	offsets.SQLDSNConnectorDSN, offsets.SQLDSNConnectorDriver, offsets.SQLDriverResultResi,
}

// Instrumentation is the database/sql instrumentation.
type Instrumentation struct{}

// Name implements probes.Instrumentation.
func (Instrumentation) Name() string { return "database/sql" }

// Fields implements probes.Instrumentation.
func (Instrumentation) Fields() (required, optional []offsets.Field) {
	return requiredFields, nil
}

// Applies implements probes.Instrumentation: the binary calls database/sql.
// The linker drops what a program never calls, so each probed function may
// be missing on its own.
func (Instrumentation) Applies(t *probes.Target) bool {
	for _, name := range []string{QueryDC, ExecDC, StmtQueryContext, StmtExecContext} {
		if _, err := t.Bin.Func(name); err == nil {
			return true
		}
	}
	return false
}

// Spec implements probes.Instrumentation.
func (Instrumentation) Spec(t *probes.Target, shared *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadDbsql()
	if err != nil {
		return nil, fmt.Errorf("database/sql: %w", err)
	}
	var specs dbsqlSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("database/sql: %w", err)
	}
	off := func(f offsets.Field) uint64 {
		o, _ := t.Offsets.Get(f)
		return o
	}
	v := &specs.dbsqlVariableSpecs
	sets := []struct {
		v   *ebpf.VariableSpec
		val any
	}{
		{v.OffG_goid, off(offsets.GoroutineID)},
		{v.OffG_parentGoid, off(offsets.GoroutineParentID)},
		{v.OffDbConnector, off(offsets.SQLDBConnector)},
		{v.OffStmtDb, off(offsets.SQLStmtDB)},
		{v.OffStmtQuery, off(offsets.SQLStmtQuery)},
		{v.OffDsnConnectorDsn, off(offsets.SQLDSNConnectorDSN)},
		{v.OffDsnConnectorDriver, off(offsets.SQLDSNConnectorDriver)},
		{v.OffDriverResultResi, off(offsets.SQLDriverResultResi)},
		{v.WakeupThreshold, shared.WakeupThreshold()},
	}
	for _, s := range sets {
		if err := s.v.Set(s.val); err != nil {
			return nil, fmt.Errorf("%s: database/sql: setting %s: %w", t, s.v.Name, err)
		}
	}
	return spec, nil
}

// Load implements probes.Instrumentation.
func (in Instrumentation) Load(t *probes.Target, shared *events.Shared) (probes.Loaded, error) {
	spec, err := in.Spec(t, shared)
	if err != nil {
		return nil, err
	}
	var objs dbsqlObjects
	opts := &ebpf.CollectionOptions{MapReplacements: shared.Replacements()}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		return nil, fmt.Errorf("%s: loading the database/sql programs: %w", t, err)
	}
	return &loaded{objs: objs}, nil
}

type loaded struct{ objs dbsqlObjects }

func (l *loaded) Uprobes() []probes.Uprobe {
	return []probes.Uprobe{
		{Symbol: QueryDC, Entry: l.objs.QueryDcEnter, Return: l.objs.QueryReturn, Optional: true},
		{Symbol: ExecDC, Entry: l.objs.ExecDcEnter, Return: l.objs.ExecReturn, Optional: true},
		{Symbol: StmtQueryContext, Entry: l.objs.StmtQueryEnter, Return: l.objs.QueryReturn, Optional: true},
		{Symbol: StmtExecContext, Entry: l.objs.StmtExecEnter, Return: l.objs.ExecReturn, Optional: true},
	}
}

func (l *loaded) Close() error { return l.objs.Close() }
