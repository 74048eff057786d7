// Command gen-offsets regenerates probes/offsets/table.json, the struct field
// offsets used for fields a binary's DWARF does not give (no DWARF at all,
// or a type the linker dropped).
//
// For each Go version it builds a small reference program with that exact
// toolchain (GOTOOLCHAIN=<version>; the go command downloads it once and
// caches it) and reads from the program's DWARF the offset of every
// standard-library field a registered probe reads (registry.Fields) or
// offsets.All lists. For each module version (path@version) it builds a
// program that requires that version and links the module's types
// (exported ones with reflect.TypeFor, unexported ones through code that
// uses them, moduleLinks), and records the module's fields. Entries not rebuilt are kept, so adding a
// release is one command:
//
//	go run ./scripts/gen-offsets -versions go1.27.4
//	go run ./scripts/gen-offsets -modules google.golang.org/grpc@v1.60.0
//
// Without -versions and -modules it rebuilds the default Go versions plus
// every entry already in the table, which is what to run after adding a
// field. Run it from the module root.
package main

import (
	"errors"
	"flag"
	"fmt"
	"go/version"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
	"github.com/zerotrace/zerotrace/probes/registry"
)

// tracked are the fields to record: every field a registered probe reads
// (registry.Fields) and the shared list (offsets.All).
var tracked []offsets.Field

// renamed are the tracked fields read under several names
// (registry.Renamed): a version without one's type has another.
var renamed map[offsets.Field]bool

// defaultVersions are the releases verified to be downloadable here.
var defaultVersions = []string{
	"go1.26.0", "go1.26.1", "go1.26.2", "go1.26.3", "go1.26.4",
	"go1.26.5", "go1.26.6", "go1.26.7", "go1.26.8",
	"go1.27.0", "go1.27.1", "go1.27.2", "go1.27.3", "go1.27.4",
}

// referenceProgram links every type that a tracked field mentions. The linker
// keeps whatever main can reach, whatever the run-time condition, so the
// server and client code and with them net/http.response, net/http.conn,
// net/http.Response, net.netFD and internal/poll.FD end up in DWARF. When All gains fields of a package this
// program does not use yet (an HTTP client, database/sql), use it here.
const referenceProgram = `// Reference program for scripts/gen-offsets: built, never run.
package main

import (
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		return
	}
	if os.Args[1] == "sql" {
		// database/sql: DB (through sql.Open's dsnConnector) and Stmt.
		db, err := sql.Open(os.Args[2], os.Args[3])
		if err != nil {
			panic(err)
		}
		stmt, err := db.Prepare(os.Args[4])
		if err != nil {
			panic(err)
		}
		rows, err := stmt.Query()
		fmt.Println(rows, err)
		res, err := db.Exec(os.Args[4])
		fmt.Println(res, err)
		return
	}
	u, err := url.Parse(os.Args[1])
	if err != nil {
		panic(err)
	}
	addr, err := net.ResolveTCPAddr("tcp", u.Host)
	if err != nil {
		panic(err)
	}
	fmt.Println(addr.IP, addr.Port)
	if len(os.Args) > 2 {
		// The client side: net/http.Response and the transport.
		resp, err := http.Get(os.Args[2])
		if err != nil {
			panic(err)
		}
		fmt.Println(resp.StatusCode)
	}
	panic(http.ListenAndServe(u.Host, nil))
}
`

func main() {
	versionsFlag := flag.String("versions", "", "comma-separated Go versions to (re)build, e.g. go1.26.8,go1.27.3 (default: "+strings.Join(defaultVersions, ",")+" plus every version already in the table)")
	modulesFlag := flag.String("modules", "", "comma-separated module versions to (re)build, e.g. google.golang.org/grpc@v1.60.0 (default: every module version already in the table)")
	out := flag.String("o", "probes/offsets/table.json", "table to update")
	replace := flag.Bool("replace", false, "drop table entries for versions not built in this run")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "gen-offsets: unexpected arguments:", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	fields, err := registry.Fields()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-offsets:", err)
		os.Exit(1)
	}
	for _, f := range offsets.All() {
		if !slices.Contains(fields, f) {
			fields = append(fields, f)
		}
	}
	tracked = fields
	if renamed, err = registry.Renamed(); err != nil {
		fmt.Fprintln(os.Stderr, "gen-offsets:", err)
		os.Exit(1)
	}
	if err := run(*versionsFlag, *modulesFlag, *out, *replace); err != nil {
		fmt.Fprintln(os.Stderr, "gen-offsets:", err)
		os.Exit(1)
	}
}

func run(versionsFlag, modulesFlag, out string, replace bool) error {
	table := offsets.Table{}
	if data, err := os.ReadFile(out); err == nil {
		if table, err = offsets.DecodeTable(data); err != nil {
			return fmt.Errorf("reading %s: %w", out, err)
		}
		if table == nil {
			table = offsets.Table{}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}

	versions, modules := splitList(versionsFlag), splitList(modulesFlag)
	if versionsFlag == "" && modulesFlag == "" {
		versions = slices.Concat(defaultVersions, table.Versions())
		for k := range table {
			if strings.Contains(k, "@") {
				modules = append(modules, k)
			}
		}
	}
	for _, m := range modules {
		if path, v, ok := strings.Cut(m, "@"); !ok || path == "" || !strings.HasPrefix(v, "v") {
			return fmt.Errorf("%q is not a module path and version such as google.golang.org/grpc@v1.60.0", m)
		}
	}
	slices.Sort(modules)
	modules = slices.Compact(modules)
	for _, v := range versions {
		// Only exact releases can be selected with GOTOOLCHAIN and looked
		// up by the exact build info a target reports.
		if !strings.HasPrefix(v, "go") || !version.IsValid(v) {
			return fmt.Errorf("%q is not a Go release name such as go1.26.8", v)
		}
	}
	slices.SortFunc(versions, version.Compare)
	versions = slices.Compact(versions)

	work, err := os.MkdirTemp("", "gen-offsets-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	if replace {
		table = offsets.Table{}
	}
	for _, v := range versions {
		fields, missing, err := measure(work, v)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		table[v] = fields
		note := ""
		if len(missing) > 0 {
			note = " (not in this version: " + strings.Join(missing, ", ") + ")"
		}
		fmt.Fprintf(os.Stderr, "%s: %d fields%s\n", v, len(fields), note)
	}
	for _, m := range modules {
		fields, missing, err := measureModule(work, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		table[m] = fields
		note := ""
		if len(missing) > 0 {
			note = " (not in this version: " + strings.Join(missing, ", ") + ")"
		}
		fmt.Fprintf(os.Stderr, "%s: %d fields%s\n", m, len(fields), note)
	}

	data, err := table.Encode()
	if err != nil {
		return err
	}
	if err := writeFile(out, data); err != nil {
		return err
	}
	reportChanges(table)
	return nil
}

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// measure builds the reference program with toolchain v and reads every
// standard-library field tracked from its DWARF. Fields that the struct lacks in this
// version are returned as missing; a missing struct means the reference
// program no longer links it, which is a bug to fix rather than to record.
func measure(work, v string) (map[string]uint64, []string, error) {
	dir := filepath.Join(work, v)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	goMod := fmt.Sprintf("module zerotrace.invalid/offsetsref\n\ngo %s\n", strings.TrimPrefix(version.Lang(v), "go"))
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(referenceProgram), 0o644); err != nil {
		return nil, nil, err
	}
	bin := filepath.Join(dir, "ref")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	// Offsets are recorded for linux/amd64, the only target the probes
	// support; cgo is off so that no C toolchain is needed and nothing but
	// the Go toolchain version can change the result.
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+v, "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("building reference program: %w\n%s", err, msg)
	}

	b, err := gobin.Open(bin)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	// A go command that ignored GOTOOLCHAIN would silently record the
	// local toolchain's layout under another version's name.
	if b.GoVersion != v {
		return nil, nil, fmt.Errorf("reference program was built by %s, want %s", b.GoVersion, v)
	}
	fields := make(map[string]uint64)
	var missing []string
	if err := b.LoadStructs(structNames(tracked)...); err != nil {
		return nil, nil, err
	}
	for _, f := range tracked {
		if f.Module != offsets.Std {
			continue
		}
		off, err := b.FieldOffset(f.Struct, f.Name)
		switch {
		case errors.Is(err, gobin.ErrNoField), renamed[f] && errors.Is(err, gobin.ErrNoType):
			missing = append(missing, f.String())
		case err != nil:
			return nil, nil, err
		default:
			fields[f.String()] = off
		}
	}
	return fields, missing, nil
}

// moduleLinks says, per module path, how the module reference program
// links code that uses the module's unexported types, whose fields
// reflect.TypeFor cannot reach: Go statements the linker must keep, run
// only under a condition that is never true at run time.
var moduleLinks = map[string]moduleLink{
	// golang.org/x/net/http2's server: ServeConn reaches serverConn.serve
	// and from it responseWriter, responseWriterState and serverConn.
	// Since Go 1.27 (without the http2legacy build tag) x/net's server
	// wraps the standard library's net/http/internal/http2 and these
	// types do not exist, so the layout is measured with a Go 1.26
	// toolchain: only binaries built by Go 1.26 or older have it.
	"golang.org/x/net": {
		Imports:   []string{"golang.org/x/net/http2"},
		Code:      "var s http2.Server\ns.ServeConn(nil, nil)",
		Toolchain: "go1.26.8",
	},
}

// moduleLink is the code that links a module's unexported types (see
// moduleLinks).
type moduleLink struct {
	// Imports are the import paths Code uses, under their package names.
	Imports []string
	// Code are statements of main, one a line.
	Code string
	// Toolchain, when set, is the Go release that builds the program
	// (GOTOOLCHAIN): the one whose build of the module has the types.
	Toolchain string
}

// moduleProgram returns the source of the reference program for the
// fields of module path: it links each exported type with
// reflect.TypeFor, and the unexported ones through the module's
// moduleLinks entry, without which they are an error.
func moduleProgram(path string, fields []offsets.Field) (string, error) {
	link, hasLink := moduleLinks[path]
	pkgs := map[string]string{} // import path -> name in the program
	var anchors []string
	for _, f := range fields {
		i := strings.LastIndex(f.Struct, ".")
		if i < 0 {
			return "", fmt.Errorf("%s: %q is not a package path and type name", f, f.Struct)
		}
		pkg, typ := f.Struct[:i], f.Struct[i+1:]
		if typ == "" || typ[0] < 'A' || typ[0] > 'Z' {
			if hasLink {
				// Linked by the module's code; DWARF will say if not.
				continue
			}
			return "", fmt.Errorf("%s: the reference program can only link exported types of %s; track the field through an exported type that holds it, or add code that uses its type to moduleLinks", f, path)
		}
		name, ok := pkgs[pkg]
		if !ok {
			name = fmt.Sprintf("p%d", len(pkgs))
			pkgs[pkg] = name
		}
		anchors = append(anchors, fmt.Sprintf("\treflect.TypeFor[%s.%s](),\n", name, typ))
	}
	var src strings.Builder
	src.WriteString("// Reference program for scripts/gen-offsets: built, never run.\npackage main\n\nimport (\n\t\"fmt\"\n")
	if hasLink {
		src.WriteString("\t\"os\"\n")
	}
	src.WriteString("\t\"reflect\"\n")
	for _, pkg := range slices.Sorted(maps.Keys(pkgs)) {
		fmt.Fprintf(&src, "\t%s %q\n", pkgs[pkg], pkg)
	}
	for _, pkg := range link.Imports {
		fmt.Fprintf(&src, "\t%q\n", pkg)
	}
	src.WriteString(")\n\nvar types = []reflect.Type{\n")
	slices.Sort(anchors)
	for _, a := range slices.Compact(anchors) {
		src.WriteString(a)
	}
	src.WriteString("}\n\nfunc main() {\n\tfmt.Println(types)\n")
	if hasLink {
		// The linker keeps what main can reach, whatever the condition.
		src.WriteString("\tif len(os.Args) > 5 {\n")
		for line := range strings.SplitSeq(link.Code, "\n") {
			src.WriteString("\t\t" + line + "\n")
		}
		src.WriteString("\t}\n")
	}
	src.WriteString("}\n")
	return src.String(), nil
}

// measureModule builds a program that requires module version m
// (path@version) and links every type of that module's fields in
// tracked (see moduleProgram), and reads the fields' offsets from its
// DWARF.
func measureModule(work, m string) (map[string]uint64, []string, error) {
	path, v, _ := strings.Cut(m, "@")
	var fields []offsets.Field
	for _, f := range tracked {
		if f.Module == path {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return nil, nil, fmt.Errorf("no tracked field is of module %s", path)
	}
	src, err := moduleProgram(path, fields)
	if err != nil {
		return nil, nil, err
	}
	toolchain := moduleLinks[path].Toolchain

	dir := filepath.Join(work, strings.NewReplacer("/", "_", "@", "_").Replace(m))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	goMod := fmt.Sprintf("module zerotrace.invalid/offsetsref\n\ngo 1.21\n\nrequire %s %s\n", path, v)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, nil, err
	}
	env := append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if toolchain != "" {
		env = append(env, "GOTOOLCHAIN="+toolchain)
	}
	bin := filepath.Join(dir, "ref")
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", bin, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = dir, env
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, msg)
		}
	}
	b, err := gobin.Open(bin)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	// tidy may have raised the version to satisfy another requirement:
	// the offsets must be recorded under the version measured.
	if got, _ := b.ModuleVersion(path); got != v {
		return nil, nil, fmt.Errorf("reference program links %s@%s, want %s", path, got, v)
	}
	// As in measure: a go command that ignored GOTOOLCHAIN would measure
	// another toolchain's build of the module.
	if toolchain != "" && b.GoVersion != toolchain {
		return nil, nil, fmt.Errorf("reference program was built by %s, want %s", b.GoVersion, toolchain)
	}
	out := make(map[string]uint64)
	var missing []string
	if err := b.LoadStructs(structNames(fields)...); err != nil {
		return nil, nil, err
	}
	for _, f := range fields {
		off, err := b.FieldOffset(f.Struct, f.Name)
		switch {
		case errors.Is(err, gobin.ErrNoField):
			missing = append(missing, f.String())
		case errors.Is(err, gobin.ErrNoType):
			return nil, nil, fmt.Errorf("%s: the reference program does not link its type (see moduleLinks): %w", f, err)
		case err != nil:
			return nil, nil, err
		default:
			out[f.String()] = off
		}
	}
	return out, missing, nil
}

// writeFile replaces path atomically so an interrupted run never leaves a
// truncated table behind for go:embed to pick up.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".table-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// reportChanges prints the fields whose offset is not the same in every
// version of the table: the layout changes that make the table necessary,
// and the first thing to look at when a probe misreads a new release.
func reportChanges(table offsets.Table) {
	versions := table.Versions()
	for _, f := range tracked {
		if f.Module != offsets.Std {
			continue
		}
		key := f.String()
		var parts []string
		prev, prevOK := uint64(0), false
		changed := false
		for i, v := range versions {
			off, ok := table[v][key]
			if i == 0 || ok != prevOK || off != prev {
				if i > 0 {
					changed = true
				}
				if ok {
					parts = append(parts, fmt.Sprintf("%s+ %d", v, off))
				} else {
					parts = append(parts, fmt.Sprintf("%s+ absent", v))
				}
			}
			prev, prevOK = off, ok
		}
		if changed {
			fmt.Fprintf(os.Stderr, "layout change: %s: %s\n", key, strings.Join(parts, ", "))
		}
	}
}

// structNames lists the structs of fields, for one DWARF walk.
func structNames(fields []offsets.Field) []string {
	var names []string
	for _, f := range fields {
		names = append(names, f.Struct)
	}
	return names
}
