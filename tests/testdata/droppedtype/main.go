// Command droppedtype is a fixture for the probes/offsets and probes/session
// tests, built by them and never run. Like many real programs (Jaeger among
// them) it links database/sql but opens its database with sql.OpenDB and a
// connector of its own, never sql.Open, so the linker drops
// database/sql.dsnConnector: its DWARF lacks a type the database/sql probe
// reads. It also links a module dependency (golang.org/x/arch), for the
// offsets keyed by module version, and serves HTTP.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http"
	"os"

	"golang.org/x/arch/x86/x86asm"
)

type connector struct{}

func (connector) Connect(context.Context) (driver.Conn, error) {
	return nil, errors.New("droppedtype: no database")
}

func (connector) Driver() driver.Driver { return nil }

func main() {
	db := sql.OpenDB(connector{})
	if len(os.Args) > 2 {
		res, err := db.Exec(os.Args[2])
		fmt.Println(res, err)
		rows, err := db.Query(os.Args[2])
		fmt.Println(rows, err)
	}
	inst, err := x86asm.Decode([]byte{0xc3}, 64)
	fmt.Println(inst, err)
	if len(os.Args) > 1 {
		panic(http.ListenAndServe(os.Args[1], nil))
	}
}
