package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/postgres"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// A customer row whose every value is something redaction or SQL
// sanitization must keep out of the exported output.
type customer struct {
	name, email, phone, note string
}

// dbCustomers are inserted as SQL literals, one per request id.
func dbCustomer(id int) customer {
	return customer{
		name:  fmt.Sprintf("Zhang Weiqiang%03d", id),
		email: fmt.Sprintf("wei.zhang%03d@example.org", id),
		phone: fmt.Sprintf("1381234%04d", 5000+id),
		note:  fmt.Sprintf("vip-%03d O'Brien's order", id),
	}
}

// dbCard is a Luhn-valid test card number, inserted as a literal.
const dbCard = "4111111111111111"

// dbAmount is a number that appears only as a literal in the SQL text: ten
// digits (within PostgreSQL's integer), so that no timestamp or ID in the
// output contains it by chance.
func dbAmount(id int) int { return 2098765400 + id }

// dbCall is one request to the database sample app and the database spans
// it must produce: their names, in any order.
type dbCall struct {
	method, path string
	body         string
	status       int
	spans        []string
	failing      string // the span name that must have error status, if any
}

func dbCalls(backend string, id int) []dbCall {
	c := dbCustomer(id)
	q := fmt.Sprintf("?db=%s&id=%d", backend, id)
	return []dbCall{
		{"POST", "/customers" + q,
			fmt.Sprintf(`{"name":%q,"email":%q,"phone":%q,"note":%q}`, c.name, c.email, c.phone, c.note),
			201, []string{"INSERT customers"}, ""},
		{"GET", "/customers/lookup" + q, "", 200, []string{"SELECT customers"}, ""},
		{"GET", "/customers/parallel" + q, "", 200, []string{"SELECT customers", "SELECT orders"}, ""},
		{"POST", "/orders" + q, fmt.Sprintf(`{"amount":%d,"card":%q}`, dbAmount(id), dbCard),
			201, []string{"INSERT orders", "SELECT orders"}, ""},
		{"GET", "/orders/prepared" + q, "", 200, []string{"SELECT orders", "UPDATE orders"}, ""},
		{"GET", "/fail" + q, "", 500, []string{"SELECT missing_table"}, "SELECT missing_table"},
	}
}

// secrets are the test data values that must appear nowhere in the output.
func dbSecrets(ids []int) []string {
	var out []string
	for _, id := range ids {
		c := dbCustomer(id)
		out = append(out, c.name, c.email, c.phone, "O''Brien", "O'Brien", fmt.Sprint(dbAmount(id)))
	}
	return append(out, dbCard, "zt-secret-pw")
}

// TestDatabaseSpans traces the database sample service, which talks to
// SQLite (modernc.org/sqlite) and to a real PostgreSQL server through lib/pq
// and pgx's database/sql driver, from handlers, goroutines, transactions
// and prepared statements. Every query must become a CLIENT span, child of
// the server span of its request (also from goroutines), named after its
// operation and table, with the database system, sanitized text and, for
// PostgreSQL, the server's address; a failing query has error status. No
// literal of the test data may appear in the JSON output, in Jaeger or on
// stderr.
func TestDatabaseSpans(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildDBApp(t)
	pg := postgres.Start(t)
	j := jaeger.Start(t)
	dir := t.TempDir()
	dbapp, addr := testenv.StartSampleApp(t, app, "-sqlite", filepath.Join(dir, "e2e.db"), "-pq", pg.DSN(), "-pgx", pg.DSN())
	service := fmt.Sprintf("e2e-db-%d", time.Now().UnixNano())
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(dbapp.Process.Pid), "--output", "json",
		"--service-name", service, "--otlp-endpoint", j.OTLPEndpoint())
	if !strings.Contains(a.Stderr(), "database/sql (") {
		t.Fatalf("the database/sql probes were not attached:\n%s", a.Stderr())
	}

	backends := map[string]string{"sqlite": "sqlite", "pq": "postgresql", "pgx": "postgresql"}
	// lib/pq and pgx share the PostgreSQL tables: each backend has its own ids.
	idBase := map[string]int{"sqlite": 100, "pq": 200, "pgx": 300}
	var ids []int
	byPath := map[string]dbSent{}
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	for backend := range backends {
		for i := range 3 {
			id := idBase[backend] + i
			ids = append(ids, id)
			for _, call := range dbCalls(backend, id) {
				req, err := http.NewRequest(call.method, "http://"+addr+call.path, strings.NewReader(call.body))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", call.method, call.path, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != call.status {
					t.Fatalf("%s %s: status %d, want %d: %s", call.method, call.path, resp.StatusCode, call.status, body)
				}
				byPath[call.path] = dbSent{backend, call}
			}
		}
	}
	a.stop()

	spans := fromJSON(a.jsonSpans())
	checkDBSpans(t, "json", spans, byPath, backends, pg.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(t, 60*time.Second))
	defer cancel()
	js, err := j.WaitForSpans(ctx, service, len(spans), testenv.Timeout(t, 30*time.Second))
	if err != nil {
		t.Fatalf("reading the spans back from Jaeger: %v", err)
	}
	checkDBSpans(t, "jaeger", fromJaeger(js), byPath, backends, pg.Addr())

	// No literal anywhere: JSON output, stderr, Jaeger's own answer.
	raw := jaegerRaw(t, j, service)
	for _, secret := range dbSecrets(ids) {
		for where, text := range map[string]string{"JSON output": a.Stdout(), "stderr": a.Stderr(), "Jaeger": raw} {
			if strings.Contains(text, secret) {
				t.Errorf("%q appears in the %s", secret, where)
			}
		}
	}
}

// jaegerRaw is Jaeger's whole answer for the service's traces, as text.
func jaegerRaw(t *testing.T, j *jaeger.Jaeger, service string) string {
	t.Helper()
	u := j.QueryURL() + "/api/traces?" + url.Values{"service": {service}, "limit": {"1000"}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// dbSent is a request sent to the database sample app, by backend.
type dbSent struct {
	backend string
	call    dbCall
}

func checkDBSpans(t *testing.T, source string, spans []observed, byPath map[string]dbSent, backends map[string]string, pgAddr string) {
	t.Helper()
	servers := map[string]observed{} // by span id
	children := map[string][]observed{}
	for _, s := range spans {
		switch {
		case s.Kind == "server":
			servers[s.SpanID] = s
		case s.Kind == "client" && s.Attrs["db.system.name"] != "":
			children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
		}
	}
	seen := map[string]bool{}
	for id, srv := range servers {
		path := srv.Attrs["url.path"]
		if q := srv.Attrs["url.query"]; q != "" {
			path += "?" + q
		}
		want, ok := byPath[path]
		if !ok {
			continue // the app's own requests, if any, are not ours
		}
		seen[path] = true
		got := children[id]
		names := make([]string, len(got))
		for i, s := range got {
			names[i] = s.Name
		}
		if !sameMultiset(names, want.call.spans) {
			t.Errorf("%s: %s %s: database spans %q, want %q", source, want.call.method, path, names, want.call.spans)
			continue
		}
		for _, s := range got {
			where := fmt.Sprintf("%s: %s %s: span %q", source, want.call.method, path, s.Name)
			if s.TraceID != srv.TraceID {
				t.Errorf("%s is in trace %s, its server span in %s", where, s.TraceID, srv.TraceID)
			}
			if sys := s.Attrs["db.system.name"]; sys != backends[want.backend] {
				t.Errorf("%s: db.system.name %q, want %q", where, sys, backends[want.backend])
			}
			text := s.Attrs["db.query.text"]
			if text == "" || strings.ContainsAny(text, "'") || strings.ContainsAny(text, "0123456789") && !strings.Contains(text, "$1") {
				t.Errorf("%s: db.query.text %q is not sanitized", where, text)
			}
			op, coll, _ := strings.Cut(s.Name, " ")
			if s.Attrs["db.operation.name"] != op || s.Attrs["db.collection.name"] != coll {
				t.Errorf("%s: db.operation.name %q, db.collection.name %q", where, s.Attrs["db.operation.name"], s.Attrs["db.collection.name"])
			}
			if backends[want.backend] == "postgresql" {
				if got := s.Attrs["server.address"] + ":" + s.Attrs["server.port"]; got != pgAddr {
					t.Errorf("%s: server %s, want %s", where, got, pgAddr)
				}
			}
			if (op == "INSERT" || op == "UPDATE") && s.Attrs["zerotrace.db.rows_affected"] != "1" {
				t.Errorf("%s: rows affected %q, want 1", where, s.Attrs["zerotrace.db.rows_affected"])
			}
			failing := s.Name == want.call.failing
			if failing != (s.Status == "error") {
				t.Errorf("%s: status %q", where, s.Status)
			}
			if failing && s.Attrs["error.type"] == "" {
				t.Errorf("%s: error status without error.type", where)
			}
			if !s.Start.Before(s.End) || s.Start.Before(srv.Start) || s.End.After(srv.End) {
				t.Errorf("%s: [%v, %v] not within its server span [%v, %v]", where, s.Start, s.End, srv.Start, srv.End)
			}
		}
	}
	for path := range byPath {
		if !seen[path] {
			t.Errorf("%s: no server span for %s", source, path)
		}
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "%s: %d server spans checked\n", source, len(seen))
	}
}

func sameMultiset(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestDatabaseSystemBehindWrapperDriver traces SQLite opened through a
// driver of the program's own type (the database sample app's "wrapped"
// backend: modernc.org/sqlite behind a driver named zt_hooks, as programs
// that add query hooks register one): its queries and execs still say
// db.system.name=sqlite, from the connection's type.
func TestDatabaseSystemBehindWrapperDriver(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildDBApp(t)
	dbapp, addr := testenv.StartSampleApp(t, app, "-sqlite-wrapped", filepath.Join(t.TempDir(), "wrapped.db"))
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(dbapp.Process.Pid), "--output", "json",
		"--inject", "off", "--listen", "off")
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	for _, call := range dbCalls("wrapped", 7)[:2] { // an exec, then a query
		req, err := http.NewRequest(call.method, "http://"+addr+call.path, strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != call.status {
			t.Fatalf("%s %s: status %d, want %d", call.method, call.path, resp.StatusCode, call.status)
		}
	}
	a.stop()
	seen := map[string]string{}
	for _, s := range fromJSON(a.jsonSpans()) {
		if s.Kind == "client" && s.Attrs["db.query.text"] != "" {
			seen[s.Name] = s.Attrs["db.system.name"]
		}
	}
	for _, name := range []string{"INSERT customers", "SELECT customers"} {
		if got := seen[name]; got != "sqlite" {
			t.Errorf("%s: db.system.name %q, want sqlite (database spans: %v)", name, got, seen)
		}
	}
}
