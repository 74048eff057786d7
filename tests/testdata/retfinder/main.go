// Command retfinder is a fixture for the probes/gobin and probes/offsets
// tests. It is built by those tests (normally and stripped) and never run by
// them: its only job is to contain a function with several return paths and
// to link the net/http server and client and database/sql so that their
// types appear in DWARF.
package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"strconv"
)

// classify has four return statements on purpose. It must stay a real
// function (not inlined) so that the tests can find it in the symbol and
// pcln tables and count one RET per return path.
//
//go:noinline
func classify(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("empty input")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1, fmt.Errorf("parsing %q: %w", s, err)
	}
	if n < 0 {
		return -n * 3, nil
	}
	return n * 2, nil
}

func main() {
	// Serving only on request keeps the program harmless when run by hand
	// while still forcing the linker to keep the whole net/http server,
	// whose struct layouts the offsets tests read back from DWARF.
	if len(os.Args) > 2 && os.Args[1] == "serve" {
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, r.Method, r.URL.Path)
		})
		if err := http.ListenAndServe(os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	// The same for the client side (net/http.persistConn and friends).
	if len(os.Args) > 2 && os.Args[1] == "get" {
		resp, err := http.Get(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
		return
	}
	// And database/sql: DB (through sql.Open), Stmt and an exec's Result.
	if len(os.Args) > 3 && os.Args[1] == "sql" {
		db, err := sql.Open(os.Args[2], os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		stmt, err := db.Prepare("SELECT 1")
		if err == nil {
			rows, err := stmt.Query()
			fmt.Println(rows, err)
			res, err := stmt.Exec()
			fmt.Println(res, err)
		}
		res, err := db.Exec("SELECT 1")
		fmt.Println(res, err)
		return
	}
	for _, a := range os.Args[1:] {
		n, err := classify(a)
		fmt.Println(n, err)
	}
}
