package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
)

// flaky is an in-process database/sql driver whose next call after arm
// fails with driver.ErrBadConn, as a pooled connection the server closed
// does: database/sql then tries the call again on another connection. Its
// queries answer one row, (1), and its execs affect one row. It has no
// tables: it is there for GET /retry.
type flaky struct{ armed atomic.Bool }

var flakyDriver = &flaky{}

// arm makes the next query or exec fail with driver.ErrBadConn.
func (d *flaky) arm() { d.armed.Store(true) }

// fail reports whether this call fails.
func (d *flaky) fail() bool { return d.armed.CompareAndSwap(true, false) }

func (d *flaky) Open(string) (driver.Conn, error) { return &flakyConn{}, nil }

type flakyConn struct{}

func (c *flakyConn) Prepare(query string) (driver.Stmt, error) { return &flakyStmt{}, nil }
func (c *flakyConn) Close() error                              { return nil }
func (c *flakyConn) Begin() (driver.Tx, error)                 { return c, nil }
func (c *flakyConn) Commit() error                             { return nil }
func (c *flakyConn) Rollback() error                           { return nil }

func (c *flakyConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	if flakyDriver.fail() {
		return nil, driver.ErrBadConn
	}
	return &flakyRows{}, nil
}

func (c *flakyConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	if flakyDriver.fail() {
		return nil, driver.ErrBadConn
	}
	return driver.RowsAffected(1), nil
}

type flakyStmt struct{}

func (s *flakyStmt) Close() error  { return nil }
func (s *flakyStmt) NumInput() int { return -1 }

func (s *flakyStmt) Exec([]driver.Value) (driver.Result, error) {
	if flakyDriver.fail() {
		return nil, driver.ErrBadConn
	}
	return driver.RowsAffected(1), nil
}

func (s *flakyStmt) Query([]driver.Value) (driver.Rows, error) {
	if flakyDriver.fail() {
		return nil, driver.ErrBadConn
	}
	return &flakyRows{}, nil
}

type flakyRows struct{ done bool }

func (r *flakyRows) Columns() []string { return []string{"n"} }
func (r *flakyRows) Close() error      { return nil }

func (r *flakyRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = int64(1)
	return nil
}

// flakyDB is the database of GET /retry, opened once (package variables
// are set before init functions run: the driver is registered here).
var flakyDB = func() *sql.DB {
	sql.Register("flaky", flakyDriver)
	db, err := sql.Open("flaky", "")
	if err != nil {
		panic(err)
	}
	return db
}()

// retry serves GET /retry?kind=query|exec|stmtquery|stmtexec&id=N: one call
// of that kind, whose first attempt fails with driver.ErrBadConn and whose
// retry, which database/sql makes by itself, succeeds. 200 "ok".
func retry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := strconv.ParseInt(r.URL.Query().Get("id"), 10, 64)
	if err != nil || id < 0 {
		http.Error(w, "id must be a non-negative integer", http.StatusBadRequest)
		return
	}
	q := fmt.Sprintf("SELECT n FROM retried WHERE id = %d", id)
	x := fmt.Sprintf("UPDATE retried SET n = n + 1 WHERE id = %d", id)
	// A connection in the pool first, so that the failing attempt uses a
	// cached one, as in life.
	if err := flakyDB.PingContext(ctx); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	flakyDriver.arm()
	switch kind := r.URL.Query().Get("kind"); kind {
	case "query":
		var n int
		err = flakyDB.QueryRowContext(ctx, q).Scan(&n)
	case "exec":
		_, err = flakyDB.ExecContext(ctx, x)
	case "stmtquery", "stmtexec":
		var stmt *sql.Stmt
		flakyDriver.armed.Store(false) // the prepare must not take the failure
		if stmt, err = flakyDB.PrepareContext(ctx, map[string]string{"stmtquery": q, "stmtexec": x}[kind]); err != nil {
			break
		}
		defer stmt.Close()
		flakyDriver.arm()
		if kind == "stmtquery" {
			var n int
			err = stmt.QueryRowContext(ctx).Scan(&n)
		} else {
			_, err = stmt.ExecContext(ctx)
		}
	default:
		http.Error(w, "kind must be query, exec, stmtquery or stmtexec", http.StatusBadRequest)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	io.WriteString(w, "ok")
}
