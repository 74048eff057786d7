package main

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/probes/offsets"
)

// A module without moduleLinks code can only have fields of exported types
// measured; one with it gets the code in a main that parses.
func TestModuleProgram(t *testing.T) {
	exported := offsets.Field{Module: "example.com/m", Struct: "example.com/m/pkg.T", Name: "X"}
	unexported := offsets.Field{Module: "example.com/m", Struct: "example.com/m/pkg.t", Name: "x"}

	src, err := moduleProgram("example.com/m", []offsets.Field{exported})
	if err != nil {
		t.Fatalf("exported type: %v", err)
	}
	if !strings.Contains(src, "reflect.TypeFor[p0.T]()") {
		t.Errorf("exported type not linked:\n%s", src)
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "main.go", src, 0); err != nil {
		t.Errorf("program does not parse: %v\n%s", err, src)
	}

	if _, err := moduleProgram("example.com/m", []offsets.Field{exported, unexported}); err == nil || !strings.Contains(err.Error(), "moduleLinks") {
		t.Errorf("unexported type without moduleLinks: err = %v, want one pointing at moduleLinks", err)
	}

	const xnet = "golang.org/x/net"
	link, ok := moduleLinks[xnet]
	if !ok {
		t.Fatalf("no moduleLinks entry for %s", xnet)
	}
	fields := []offsets.Field{
		{Module: xnet, Struct: "golang.org/x/net/http2.responseWriterState", Name: "status"},
		{Module: xnet, Struct: "golang.org/x/net/http2.Server", Name: "MaxHandlers"},
	}
	src, err = moduleProgram(xnet, fields)
	if err != nil {
		t.Fatalf("unexported type with moduleLinks: %v", err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", src, 0)
	if err != nil {
		t.Fatalf("program does not parse: %v\n%s", err, src)
	}
	imports := map[string]bool{}
	for _, imp := range f.Imports {
		imports[strings.Trim(imp.Path.Value, `"`)] = true
	}
	for _, want := range append([]string{"os"}, link.Imports...) {
		if !imports[want] {
			t.Errorf("program does not import %s:\n%s", want, src)
		}
	}
	for line := range strings.SplitSeq(link.Code, "\n") {
		if !strings.Contains(src, line) {
			t.Errorf("program lacks %q:\n%s", line, src)
		}
	}
	if !strings.Contains(src, "reflect.TypeFor[p0.Server]()") {
		t.Errorf("exported type of a module with moduleLinks not linked:\n%s", src)
	}
}
