// Command dbapp is a net/http service that talks to SQL databases through
// database/sql, for zerotrace's database tracing tests. It can use three
// backends at once, each enabled by its flag and chosen per request with
// ?db=NAME:
//
//	sqlite  -sqlite PATH  modernc.org/sqlite (pure Go), driver "sqlite"
//	pq      -pq DSN       PostgreSQL through github.com/lib/pq, driver "postgres"
//	pgx     -pgx DSN      PostgreSQL through github.com/jackc/pgx/v5/stdlib, driver "pgx"
//	wrapped -sqlite-wrapped PATH  modernc.org/sqlite behind a driver of this
//	                      program's own type, "zt_hooks", as programs that
//	                      add query hooks register one
//
// At start it creates, in every enabled backend, the tables
//
//	customers(id, name, email, phone, note)
//	orders(id, customer_id, amount, card)
//
// when they do not exist and deletes every row from both, so each run starts
// empty. When -pq and -pgx name the same database they share the tables: a
// test must then give each backend its own ids.
//
// It prints exactly one line, "listening on HOST:PORT", to stdout once its
// listener is bound and the databases are ready, then serves until SIGTERM
// or SIGINT and shuts down gracefully.
//
// Every route takes ?db=sqlite|pq|pgx|wrapped (400 when unknown or not enabled) and
// ?id=N, a non-negative integer the test chooses, from which every row id
// derives: customer N, and order N of customer N. Most queries carry their
// values as literals inlined in the SQL text, never as placeholders, since
// the tracer must strip literals from the query text it records. Routes:
//
//	POST /customers          body {"name","email","phone","note"}: one
//	                         ExecContext of an INSERT with inlined literals;
//	                         201 {"id":N} (500 when customer N exists)
//	GET  /customers/lookup   one QueryRowContext, in the handler's goroutine,
//	                         of SELECT name, email ... WHERE id = N;
//	                         200 {"id","name","email"}, 404 when there is none
//	GET  /customers/parallel two QueryContext calls in two goroutines, the
//	                         second from a goroutine started by a goroutine:
//	                         SELECT count(*) FROM customers WHERE id = N and
//	                         SELECT id FROM orders WHERE customer_id = N;
//	                         200 {"count":C,"orders":[ids]}
//	POST /orders             body {"amount":int,"card":"..."}: a transaction
//	                         (BeginTx; ExecContext INSERT INTO orders with
//	                         inlined literals; QueryRowContext SELECT amount
//	                         ... WHERE id = N; Commit); 201 {"id":N,"amount":A}
//	GET  /orders/prepared    PrepareContext of SELECT amount, card FROM orders
//	                         WHERE customer_id = ? ($1 on PostgreSQL), then
//	                         QueryContext with N; PrepareContext of UPDATE
//	                         orders SET amount = amount + 1 WHERE id = ? ($1),
//	                         then ExecContext with N;
//	                         200 {"orders":[{"amount","card"}],"updated":U}
//	GET  /fail               QueryContext of SELECT * FROM missing_table WHERE
//	                         id = N; 500 with the driver's error text
//	GET  /chain              (no ?db=) one query on the first enabled backend,
//	                         then "N:db", so that a sample app's /chain can
//	                         call this service
//	GET  /retry              (no ?db=) ?kind=query|exec|stmtquery|stmtexec:
//	                         one call on an in-process driver whose first
//	                         attempt fails with driver.ErrBadConn, which
//	                         database/sql retries (retry.go); 200 "ok"
//
// Anything else gets the mux's 404 (or 405 for a known path with another
// method). Only database/sql APIs are used for queries, with one *sql.DB per
// backend shared by all requests.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "github.com/lib/pq"              // driver "postgres"
	"modernc.org/sqlite"               // driver "sqlite"
)

const (
	// setupTimeout bounds connecting to the databases and preparing the
	// tables at start.
	setupTimeout = 30 * time.Second
	// shutdownTimeout bounds the graceful shutdown; no request is meant to
	// take more than a moment.
	shutdownTimeout = 8 * time.Second
	// maxBody bounds request bodies; tests send a few hundred bytes.
	maxBody = 1 << 20
	// sqliteBusyTimeout is how long a SQLite connection waits for another
	// one's write lock (concurrent requests) before failing.
	sqliteBusyTimeout = 5000 // ms
)

func init() {
	sql.Register("zt_hooks", &hooksDriver{real: &sqlite.Driver{}})
}

// hooksDriver stands for the drivers programs register around a real one
// to add query hooks or instrumentation: its type names no database, and
// the connections it opens are the real driver's.
type hooksDriver struct{ real driver.Driver }

// Open opens a connection of the real driver.
func (d *hooksDriver) Open(name string) (driver.Conn, error) { return d.real.Open(name) }

// backend is one database, shared by all requests.
type backend struct {
	name string
	db   *sql.DB
	// placeholder is the driver's first bind parameter: "?" or "$1".
	placeholder string
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	sqlitePath := flag.String("sqlite", "", "SQLite database file (empty: backend sqlite disabled)")
	pqDSN := flag.String("pq", "", "PostgreSQL DSN for lib/pq (empty: backend pq disabled)")
	pgxDSN := flag.String("pgx", "", "PostgreSQL DSN for pgx (empty: backend pgx disabled)")
	wrappedPath := flag.String("sqlite-wrapped", "", "SQLite database file opened through the zt_hooks wrapper driver (empty: backend wrapped disabled)")
	flag.Parse()
	log.SetPrefix("dbapp: ")
	log.SetFlags(0)
	if err := run(*addr, *sqlitePath, *pqDSN, *pgxDSN, *wrappedPath); err != nil {
		log.Fatal(err)
	}
}

func run(addr, sqlitePath, pqDSN, pgxDSN, wrappedPath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	backends, err := openBackends(ctx, sqlitePath, pqDSN, pgxDSN, wrappedPath)
	defer func() {
		for _, b := range backends {
			b.db.Close()
		}
	}()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newMux(backends),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// The port is known only once bound: tests read this line to find it,
	// so it is printed after Listen and before serving.
	fmt.Printf("listening on %s\n", ln.Addr())

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openBackends opens every enabled backend and prepares its tables. It
// returns the backends opened so far even on error, for the caller to close.
func openBackends(ctx context.Context, sqlitePath, pqDSN, pgxDSN, wrappedPath string) (map[string]*backend, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	type spec struct {
		name, driver, dsn, placeholder string
		postgres                       bool
	}
	var specs []spec
	if sqlitePath != "" {
		// busy_timeout makes concurrent writers wait for each other instead
		// of failing with SQLITE_BUSY; modernc.org/sqlite applies it to every
		// connection it opens.
		dsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)", sqlitePath, sqliteBusyTimeout)
		specs = append(specs, spec{"sqlite", "sqlite", dsn, "?", false})
	}
	if wrappedPath != "" {
		dsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)", wrappedPath, sqliteBusyTimeout)
		specs = append(specs, spec{"wrapped", "zt_hooks", dsn, "?", false})
	}
	if pqDSN != "" {
		specs = append(specs, spec{"pq", "postgres", pqDSN, "$1", true})
	}
	if pgxDSN != "" {
		specs = append(specs, spec{"pgx", "pgx", pgxDSN, "$1", true})
	}
	backends := map[string]*backend{}
	// One at a time: -pq and -pgx may name the same database, and
	// PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against itself
	// running concurrently.
	for _, s := range specs {
		db, err := sql.Open(s.driver, s.dsn)
		if err != nil {
			return backends, fmt.Errorf("%s: %w", s.name, err)
		}
		backends[s.name] = &backend{name: s.name, db: db, placeholder: s.placeholder}
		if err := prepareTables(ctx, db, s.postgres); err != nil {
			return backends, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return backends, nil
}

// prepareTables creates the tables when missing and empties them.
func prepareTables(ctx context.Context, db *sql.DB, postgres bool) error {
	// SQLite's "integer primary key" is the 64-bit rowid; PostgreSQL's
	// integer is 32 bits, so it gets bigint.
	integer := "integer"
	if postgres {
		integer = "bigint"
	}
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS customers (id " + integer + " primary key, name text, email text, phone text, note text)",
		"CREATE TABLE IF NOT EXISTS orders (id " + integer + " primary key, customer_id " + integer + ", amount " + integer + ", card text)",
		"DELETE FROM customers",
		"DELETE FROM orders",
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

func newMux(backends map[string]*backend) *http.ServeMux {
	a := &app{backends: backends}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /customers", a.handle(a.createCustomer))
	mux.HandleFunc("GET /customers/lookup", a.handle(a.lookupCustomer))
	mux.HandleFunc("GET /customers/parallel", a.handle(a.parallel))
	mux.HandleFunc("POST /orders", a.handle(a.createOrder))
	mux.HandleFunc("GET /orders/prepared", a.handle(a.prepared))
	mux.HandleFunc("GET /fail", a.handle(a.fail))
	mux.HandleFunc("GET /chain", a.chain)
	mux.HandleFunc("GET /retry", retry)
	return mux
}

// chain lets a sample app's /chain call this service: one query on the
// first enabled backend (sqlite, pq, pgx in that order), then "id:db".
func (a *app) chain(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.URL.Query().Get("id"), 10, 64)
	if err != nil || id < 0 {
		http.Error(w, "id must be a non-negative integer", http.StatusBadRequest)
		return
	}
	for _, name := range []string{"sqlite", "pq", "pgx"} {
		b, ok := a.backends[name]
		if !ok {
			continue
		}
		var n int64
		if err := b.db.QueryRowContext(r.Context(), "SELECT count(*) FROM orders WHERE customer_id = "+num(id)).Scan(&n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, num(id)+":db")
		return
	}
	http.Error(w, "no backend enabled", http.StatusServiceUnavailable)
}

type app struct {
	backends map[string]*backend
}

// handle reads ?db= and ?id= for h, answering 400 when either is bad.
func (a *app) handle(h func(w http.ResponseWriter, r *http.Request, b *backend, id int64)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		b, ok := a.backends[q.Get("db")]
		if !ok {
			http.Error(w, fmt.Sprintf("db=%q is not an enabled backend (enabled: %s)", q.Get("db"), a.enabled()), http.StatusBadRequest)
			return
		}
		id, err := strconv.ParseInt(q.Get("id"), 10, 64)
		if err != nil || id < 0 {
			http.Error(w, fmt.Sprintf("id=%q is not a non-negative integer", q.Get("id")), http.StatusBadRequest)
			return
		}
		h(w, r, b, id)
	}
}

func (a *app) enabled() string {
	var names []string
	for _, n := range []string{"sqlite", "pq", "pgx", "wrapped"} {
		if _, ok := a.backends[n]; ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// str renders s as an SQL string literal. It is valid in SQLite and in
// PostgreSQL with standard_conforming_strings on (the default since 9.1),
// where a backslash is an ordinary character.
func str(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// num renders n as an SQL integer literal.
func num(n int64) string {
	return strconv.FormatInt(n, 10)
}

// readJSON decodes the request body into v, answering 400 on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v); err != nil {
		http.Error(w, "bad JSON body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// noNUL answers 400 when a string holds a NUL byte, which PostgreSQL text
// cannot store.
func noNUL(w http.ResponseWriter, fields ...string) bool {
	for _, f := range fields {
		if strings.IndexByte(f, 0) >= 0 {
			http.Error(w, "strings must not contain NUL", http.StatusBadRequest)
			return false
		}
	}
	return true
}

func (a *app) createCustomer(w http.ResponseWriter, r *http.Request, b *backend, id int64) {
	var c struct {
		Name  string `json:"name"`
		Email string `json:"email"`
		Phone string `json:"phone"`
		Note  string `json:"note"`
	}
	if !readJSON(w, r, &c) || !noNUL(w, c.Name, c.Email, c.Phone, c.Note) {
		return
	}
	q := "INSERT INTO customers (id, name, email, phone, note) VALUES (" +
		num(id) + ", " + str(c.Name) + ", " + str(c.Email) + ", " + str(c.Phone) + ", " + str(c.Note) + ")"
	if _, err := b.db.ExecContext(r.Context(), q); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"id": id})
}

func (a *app) lookupCustomer(w http.ResponseWriter, r *http.Request, b *backend, id int64) {
	var name, email sql.NullString
	err := b.db.QueryRowContext(r.Context(), "SELECT name, email FROM customers WHERE id = "+num(id)).Scan(&name, &email)
	if errors.Is(err, sql.ErrNoRows) {
		http.Error(w, "no customer "+num(id), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "name": name.String, "email": email.String})
}

// parallel runs its two queries the way a service fanning out does: one in
// a goroutine, the other in a goroutine started by a goroutine.
func (a *app) parallel(w http.ResponseWriter, r *http.Request, b *backend, id int64) {
	ctx := r.Context()
	var (
		count    int64
		orders   = []int64{}
		countErr error
		orderErr error
	)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		countErr = queryInts(ctx, b.db, "SELECT count(*) FROM customers WHERE id = "+num(id), func(n int64) { count = n })
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		inner := make(chan struct{})
		go func() {
			defer close(inner)
			orderErr = queryInts(ctx, b.db, "SELECT id FROM orders WHERE customer_id = "+num(id), func(n int64) { orders = append(orders, n) })
		}()
		<-inner
	}()
	<-done
	<-done
	if err := errors.Join(countErr, orderErr); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": count, "orders": orders})
}

// queryInts runs q with QueryContext and calls each for the single integer
// column of every row.
func queryInts(ctx context.Context, db *sql.DB, q string, each func(int64)) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return err
		}
		each(n)
	}
	return rows.Err()
}

func (a *app) createOrder(w http.ResponseWriter, r *http.Request, b *backend, id int64) {
	var o struct {
		Amount int64  `json:"amount"`
		Card   string `json:"card"`
	}
	if !readJSON(w, r, &o) || !noNUL(w, o.Card) {
		return
	}
	amount, err := insertOrder(r.Context(), b.db, id, o.Amount, o.Card)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"id": id, "amount": amount})
}

// insertOrder inserts order id of customer id in a transaction and reads
// its amount back inside it.
func insertOrder(ctx context.Context, db *sql.DB, id, amount int64, card string) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	// After a successful Commit, Rollback does nothing (sql.ErrTxDone).
	defer tx.Rollback()
	q := "INSERT INTO orders (id, customer_id, amount, card) VALUES (" +
		num(id) + ", " + num(id) + ", " + num(amount) + ", " + str(card) + ")"
	if _, err := tx.ExecContext(ctx, q); err != nil {
		return 0, err
	}
	var got int64
	if err := tx.QueryRowContext(ctx, "SELECT amount FROM orders WHERE id = "+num(id)).Scan(&got); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return got, nil
}

func (a *app) prepared(w http.ResponseWriter, r *http.Request, b *backend, id int64) {
	type order struct {
		Amount int64  `json:"amount"`
		Card   string `json:"card"`
	}
	ctx := r.Context()
	orders := []order{}
	err := func() error {
		stmt, err := b.db.PrepareContext(ctx, "SELECT amount, card FROM orders WHERE customer_id = "+b.placeholder)
		if err != nil {
			return err
		}
		defer stmt.Close()
		rows, err := stmt.QueryContext(ctx, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o order
			var card sql.NullString
			if err := rows.Scan(&o.Amount, &card); err != nil {
				return err
			}
			o.Card = card.String
			orders = append(orders, o)
		}
		return rows.Err()
	}()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var updated int64
	err = func() error {
		stmt, err := b.db.PrepareContext(ctx, "UPDATE orders SET amount = amount + 1 WHERE id = "+b.placeholder)
		if err != nil {
			return err
		}
		defer stmt.Close()
		res, err := stmt.ExecContext(ctx, id)
		if err != nil {
			return err
		}
		updated, err = res.RowsAffected()
		return err
	}()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": orders, "updated": updated})
}

func (a *app) fail(w http.ResponseWriter, r *http.Request, b *backend, id int64) {
	rows, err := b.db.QueryContext(r.Context(), "SELECT * FROM missing_table WHERE id = "+num(id))
	if err == nil {
		// Some drivers report the error only when rows are read.
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if err == nil {
		err = errors.New("the query on missing_table unexpectedly succeeded")
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
