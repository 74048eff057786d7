package session

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/dbsql"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/gobin/gobintest"
	"github.com/zerotrace/zerotrace/probes/registry"
)

var fixtures *gobintest.Fixtures

func TestMain(m *testing.M) {
	var err error
	if fixtures, err = gobintest.NewFixtures(); err != nil {
		panic(err)
	}
	code := m.Run()
	fixtures.Close()
	os.Exit(code)
}

// droppedType is the fixture program that links database/sql without
// sql.Open, so that its linker drops database/sql.dsnConnector (as Jaeger's
// does), and serves HTTP.
const droppedType = "./tests/testdata/droppedtype"

// target opens a binary as a target without a process: planning needs none.
func target(t *testing.T, path string) *probes.Target {
	t.Helper()
	b, err := gobin.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tg := &probes.Target{Exe: path, ProbePath: path, Bin: b}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// withGoVersion copies a binary with its recorded Go version rewritten in
// place to v (of the same length), as a binary of a release the bundled
// offsets table does not know yet.
func withGoVersion(t *testing.T, path, v string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte(runtime.Version())
	if len(old) != len(v) {
		t.Fatalf("cannot rewrite %s to %s in place", old, v)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path)+"-"+v)
	if err := os.WriteFile(out, bytes.ReplaceAll(data, old, []byte(v)), 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

func status(p *Plan, name string) *probes.Planned {
	for _, in := range p.Status {
		if in.Name() == name {
			return in
		}
	}
	return nil
}

// A binary whose linker dropped a type an instrumentation reads: when
// neither DWARF nor the offsets table gives the type's fields, the
// instrumentation runs without the attributes they give, says so, and the
// others are untouched.
func TestPlanDegradesWithoutDroppedType(t *testing.T) {
	built := fixtures.Build(t, "droppedtype", droppedType, []string{"CGO_ENABLED=0"})
	tg := target(t, withGoVersion(t, built, "go1.99.9"))
	if _, err := tg.Bin.FieldOffset("database/sql.dsnConnector", "dsn"); err == nil {
		t.Fatal("the fixture's DWARF has database/sql.dsnConnector: the linker was meant to drop it")
	}
	p, err := PlanFor(tg, registry.Probes(), Options{InjectWriteUser: true})
	if err != nil {
		t.Fatalf("nothing attached because of one missing type: %v", err)
	}
	db := status(p, "database/sql")
	if db == nil || db.State != probes.Degraded {
		t.Fatalf("database/sql: %+v, want degraded", db)
	}
	if len(db.Missing) != 1 || !strings.Contains(db.Missing[0].Gives, "server.address") ||
		!strings.Contains(db.Missing[0].Why, dbsql.DSNConnectorDSN.String()) || !strings.Contains(db.Missing[0].Why, "not found in DWARF") {
		t.Errorf("database/sql lacks %+v, want only the data source's attributes, for want of database/sql.dsnConnector", db.Missing)
	}
	for _, name := range []string{"net/http server", "goroutine ancestry"} {
		if in := status(p, name); in == nil || in.State != probes.Active {
			t.Errorf("%s: %+v, want active", name, in)
		}
	}
	if in := status(p, "net/http client"); in == nil || in.State != probes.NotApplicable {
		t.Errorf("net/http client: %+v, want not applicable (the fixture makes no HTTP call)", in)
	}
	// One line for the user, the details for a debug log; the prepared
	// statements this program never uses are not a loss.
	want := "database/sql degraded: without server.address, server.port and db.namespace from sql.Open's data source name"
	if !contains(p.Notes, want) {
		t.Errorf("notes %q lack %q", p.Notes, want)
	}
	if !contains(p.Details, "database/sql: no server.address") {
		t.Errorf("details %q do not say why", p.Details)
	}
	for _, n := range append(p.Notes, p.Details...) {
		if strings.Contains(n, "prepared statements") {
			t.Errorf("reported as lost: %q (the binary has no prepared statement to trace)", n)
		}
	}
	// What it goes without, it does not read.
	for _, f := range db.Reads() {
		if f == dbsql.StmtQuery || f == dbsql.DSNConnectorDSN {
			t.Errorf("database/sql reads %s, which it goes without", f)
		}
	}

	// With the Go version the bundled table knows, the table gives what
	// DWARF lacks, and nothing is lost.
	tg = target(t, built)
	p, err = PlanFor(tg, registry.Probes(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if db := status(p, "database/sql"); db.State != probes.Active {
		t.Errorf("database/sql with the table: %s %+v", db.State, db.Missing)
	}
	if src := tg.Offsets.Source; !strings.HasPrefix(src, "dwarf, and table "+runtime.Version()) {
		t.Errorf("offsets from %q, want DWARF and the table", src)
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
