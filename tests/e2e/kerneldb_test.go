package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export/servicemap"
	"github.com/zerotrace/zerotrace/tests/internal/mysql"
	"github.com/zerotrace/zerotrace/tests/internal/postgres"
	"github.com/zerotrace/zerotrace/tests/internal/redis"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// TestKernelDatabaseProtocols traces a Python http.server backend that
// talks to PostgreSQL (psycopg2, libpq), MariaDB (PyMySQL) and Redis
// (redis-py): programs zerotrace sees only through syscall tracepoints. Its connections to both
// are opened before the agent attaches (recognised by their first query or
// command), and more are opened after (recognised by PostgreSQL's startup
// message, after an SSL request the server declines, and by MariaDB's
// greeting). Every query and
// command must become one CLIENT span, child of the server span of the
// request that made it, with the database's system, sanitized text,
// operation, collection, server address, rows, and the server's error
// code for a failing one; replies spread over many reads (a 20000-row
// result, a 200 KB value) end where they end. The service map must show
// the two databases as nodes with request counts equal to the spans, and
// no query literal, value or password may leave the agent.
func TestKernelDatabaseProtocols(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	pg := postgres.Start(t)
	rd := redis.Start(t)
	my := mysql.Start(t)
	pgHost, pgPort, _ := strings.Cut(pg.Addr(), ":")
	dsn := fmt.Sprintf("host=%s port=%s dbname=%s user=%s password=%s sslmode=prefer",
		pgHost, pgPort, postgres.Database, postgres.User, postgres.Password)
	script := filepath.Join(testenv.RepoRoot(t), "tests", "testdata", "pyhttp", "server.py")
	// env execs python3 in its own process: the PID is the backend's.
	backend, beAddr := testenv.StartSampleApp(t, "/usr/bin/env", "ZT_PG_DSN="+dsn,
		fmt.Sprintf("ZT_REDIS_PORT=%d", rd.Port), fmt.Sprintf("ZT_MYSQL_PORT=%d", my.Port), python, script)
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(backend.Process.Pid), "--output", "json", "--listen", "127.0.0.1:0")
	m := mapAddr.FindStringSubmatch(a.Stderr())
	if m == nil {
		t.Fatalf("the agent did not say where its endpoint is:\n%s", a.Stderr())
	}

	const perRoute, workers = 12, 3
	routes := []string{"/pg", "/redis", "/mysql"}
	var wg sync.WaitGroup
	errs := make(chan error, len(routes)*perRoute+10)
	get := func(c *http.Client, path string, want int) {
		resp, err := c.Get("http://" + beAddr + path)
		if err != nil {
			errs <- err
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			errs <- fmt.Errorf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
			for id := w; id < len(routes)*perRoute; id += workers {
				get(c, fmt.Sprintf("%s?id=%d", routes[id%len(routes)], id), 200)
			}
		}()
	}
	wg.Wait()
	c := &http.Client{Timeout: testenv.Timeout(t, 20*time.Second)}
	get(c, "/pg/fail", 500)
	get(c, "/pg/big", 200)
	get(c, "/redis/fail", 500)
	get(c, "/redis/big", 200)
	get(c, "/mysql/fail", 500)
	get(c, "/mysql/big", 200)
	get(c, "/redis/close", 200)
	tlsPort, tcpPort := serveOnce(t, nil), serveOnce(t, []byte("PONG\n"))
	get(c, fmt.Sprintf("/external?tls=%d&tcp=%d", tlsPort, tcpPort), 200)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !alive(backend.Process.Pid) {
		t.Fatal("the backend died")
	}
	base := "http://" + m[1]
	var graph servicemap.Map
	deadline := time.Now().Add(testenv.Timeout(t, 20*time.Second))
	for {
		var err error
		if graph, err = getMap(base); err != nil {
			t.Fatal(err)
		}
		if len(graph.Edges) == 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkAdoptedConnections(t, base, backend.Process.Pid, pg.Addr(), rd.Addr(), my.Addr())
	a.stop()

	spans := fromJSON(a.jsonSpans())
	servers := map[string]observed{}
	for _, s := range spans {
		if s.Kind == "server" {
			servers[s.SpanID] = s
		}
	}
	// What each request must have made, in order, by route.
	wantOps := map[string][]string{
		"/pg":         {"SELECT items", "BEGIN", "INSERT items", "COMMIT"},
		"/pg/fail":    {"SELECT no_such_table"},
		"/pg/big":     {"SELECT"},
		"/redis":      {"SET", "GET", "INCRBY"},
		"/redis/fail": {"SET", "LPUSH"},
		"/redis/big":  {"SET", "GET"},
		"/mysql":      {"SELECT items", "SET", "INSERT items", "COMMIT"},
		"/mysql/fail": {"SELECT no_such_table"},
		"/mysql/big":  {"SELECT seq_1_to_20000"},
	}
	wantServers := map[string]int{"/pg": perRoute, "/redis": perRoute, "/pg/fail": 1, "/pg/big": 1, "/redis/fail": 1, "/redis/big": 1, "/redis/close": 1, "/external": 1, "/mysql": perRoute, "/mysql/fail": 1, "/mysql/big": 1}
	children := map[string][]observed{}
	perSystem := map[string]int64{}
	for _, s := range spans {
		if s.Kind != "client" {
			continue
		}
		sys := s.Attrs["db.system.name"]
		perSystem[sys]++
		parent, ok := servers[s.ParentSpanID]
		if !ok || parent.TraceID != s.TraceID {
			t.Errorf("%s span %q (%s) is not the child of a server span", sys, s.Name, s.Attrs["db.query.text"])
			continue
		}
		if s.Start.Before(parent.Start) || s.End.After(parent.End) || s.End.Before(s.Start) {
			t.Errorf("%s span %q [%v, %v] is not inside its request [%v, %v]", sys, s.Name, s.Start, s.End, parent.Start, parent.End)
		}
		children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
		port := map[string]string{"postgresql": pgPort, "redis": fmt.Sprint(rd.Port), "mysql": fmt.Sprint(my.Port)}[sys]
		if s.Attrs["server.address"] != "127.0.0.1" || s.Attrs["server.port"] != port || s.Attrs["zerotrace.source"] != "kernel" {
			t.Errorf("%s span %q: server %s:%s, source %q", sys, s.Name, s.Attrs["server.address"], s.Attrs["server.port"], s.Attrs["zerotrace.source"])
		}
	}
	byRoute := map[string]int{}
	for id, srv := range servers {
		route := srv.Attrs["url.path"]
		byRoute[route]++
		ops := children[id]
		var names []string
		for _, op := range ops {
			names = append(names, op.Name)
		}
		if fmt.Sprint(names) != fmt.Sprint(wantOps[route]) {
			t.Errorf("request %s made %v, want %v", route, names, wantOps[route])
			continue
		}
		for _, op := range ops {
			checkDatabaseSpan(t, route, op)
		}
	}
	if fmt.Sprint(byRoute) != fmt.Sprint(wantServers) {
		t.Errorf("server spans by route %v, want %v", byRoute, wantServers)
	}
	if want := int64(perRoute*4 + 2); perSystem["postgresql"] != want {
		t.Errorf("%d PostgreSQL spans, want %d", perSystem["postgresql"], want)
	}
	if want := int64(perRoute*3 + 4); perSystem["redis"] != want {
		t.Errorf("%d Redis spans, want %d", perSystem["redis"], want)
	}
	if want := int64(perRoute*4 + 2); perSystem["mysql"] != want {
		t.Errorf("%d MySQL spans, want %d", perSystem["mysql"], want)
	}

	// The map: the backend and the two databases, as many requests per
	// edge as spans; and the two endpoints only connections show, the TLS
	// one named by the server name its client asked for.
	svc := "service:" + exeName(t, backend.Process.Pid)
	tlsNode, tcpNode := fmt.Sprintf("external:api.llm.example:%d", tlsPort), fmt.Sprintf("external:127.0.0.1:%d", tcpPort)
	wantEdges := map[[2]string]string{
		{svc, "db:postgresql " + pg.Addr()}: fmt.Sprintf("%d requests, 1 errors", perSystem["postgresql"]),
		{svc, "db:redis " + rd.Addr()}:      fmt.Sprintf("%d requests, 1 errors", perSystem["redis"]),
		{svc, "db:mysql " + my.Addr()}:      fmt.Sprintf("%d requests, 1 errors", perSystem["mysql"]),
		{svc, tlsNode}:                      "1 connections",
		{svc, tcpNode}:                      "1 connections",
	}
	edges := map[[2]string]string{}
	for _, e := range graph.Edges {
		got := fmt.Sprintf("%d requests, %d errors", e.Total.Requests, e.Total.Errors)
		if e.Total.Connections > 0 {
			got = fmt.Sprintf("%d connections", e.Total.Connections)
			if e.Total.Requests != 0 || e.Total.Bytes <= 0 {
				t.Errorf("edge %s → %s: %d requests, %d bytes", e.Source, e.Target, e.Total.Requests, e.Total.Bytes)
			}
		}
		edges[[2]string{e.Source, e.Target}] = got
	}
	protocols := map[string]string{}
	for _, n := range graph.Nodes {
		protocols[n.ID] = n.Protocol
	}
	if protocols[tlsNode] != "tls" || protocols[tcpNode] != "tcp" {
		t.Errorf("protocols: %s %q, %s %q", tlsNode, protocols[tlsNode], tcpNode, protocols[tcpNode])
	}
	if fmt.Sprint(edges) != fmt.Sprint(wantEdges) {
		t.Errorf("map edges %v, want %v", edges, wantEdges)
	}
	for _, n := range graph.Nodes {
		if n.ID != svc && n.Kind != servicemap.KindDatabase && n.Kind != servicemap.KindExternal {
			t.Errorf("map node %s is a %s", n.ID, n.Kind)
		}
	}

	out := a.Stdout() + a.Stderr()
	for _, secret := range []string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com", "frank@example.com", "secret-value-", "zt:key:", postgres.Password, "generate_series(1, 20000)"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q left the agent", secret)
		}
	}
}

// serveOnce listens on a free loopback port, reads what the first
// connection sends (up to a line, or a TLS ClientHello), answers reply if
// any, and closes; it returns the port.
func serveOnce(t *testing.T, reply []byte) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		if reply != nil {
			_, _ = c.Write(reply)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// checkAdoptedConnections checks the connection table for the backend's
// connections made before the agent attached: the one to PostgreSQL still
// open, the one to Redis closed by /redis/close, both with their byte
// counts; and that connections still open (the test's keep-alive ones)
// show their bytes so far.
func checkAdoptedConnections(t *testing.T, base string, pid int, pgAddr, rdAddr, myAddr string) {
	t.Helper()
	var pgOpen, myOpen, rdClosed, liveServer bool
	var conns []apiConn
	deadline := time.Now().Add(testenv.Timeout(t, 10*time.Second))
	for !(pgOpen && myOpen && rdClosed && liveServer) && time.Now().Before(deadline) {
		conns = connections(t, base)
		for _, c := range conns {
			bytes := c.BytesReceived > 0 && c.BytesSent > 0
			liveServer = liveServer || c.PID == pid && c.Role == "server" && c.Closed == nil && bytes
			if c.PID != pid || c.Role != "client" || !c.Before {
				continue
			}
			pgOpen = pgOpen || c.Remote == pgAddr && c.Closed == nil && bytes
			myOpen = myOpen || c.Remote == myAddr && c.Closed == nil && bytes
			rdClosed = rdClosed || c.Remote == rdAddr && c.Closed != nil && bytes
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !pgOpen || !myOpen || !rdClosed || !liveServer {
		t.Errorf("connections from before the attach: PostgreSQL open with bytes %v, MySQL %v, Redis closed with bytes %v; an open server connection with bytes %v:\n%+v",
			pgOpen, myOpen, rdClosed, liveServer, conns)
	}
}

// checkDatabaseSpan checks one query or command of the request route.
func checkDatabaseSpan(t *testing.T, route string, s observed) {
	t.Helper()
	a := s.Attrs
	switch {
	case strings.HasPrefix(route, "/pg"):
		if a["db.system.name"] != "postgresql" || a["db.operation.name"] != strings.Fields(s.Name)[0] {
			t.Errorf("%s: span %q: %v", route, s.Name, a)
		}
		text := a["db.query.text"]
		if strings.ContainsAny(text, "'") || strings.Contains(text, "%s") {
			t.Errorf("%s: query text %q is not sanitized", route, text)
		}
		switch s.Name {
		case "SELECT items":
			if text != "SELECT count(*) FROM items WHERE owner = ?" || a["db.collection.name"] != "items" || a["db.response.returned_rows"] != "1" {
				t.Errorf("%s: SELECT span: %v", route, a)
			}
		case "INSERT items":
			// A connection opened after the attach: its startup names the database.
			if text != "INSERT INTO items (id, owner) VALUES (?, ?)" || a["zerotrace.db.rows_affected"] != "1" || a["db.namespace"] != postgres.Database {
				t.Errorf("%s: INSERT span: %v", route, a)
			}
		case "SELECT no_such_table":
			if s.Status != "error" || a["error.type"] != "42P01" || a["db.response.status_code"] != "42P01" {
				t.Errorf("%s: failing query: status %s, %v", route, s.Status, a)
			}
		case "SELECT":
			// 20000 rows over many reads: the span lasts until the last.
			if !strings.Contains(text, "generate_series(?, ?)") || s.End.Sub(s.Start) < 100*time.Microsecond {
				t.Errorf("%s: big query: %v, lasted %v", route, a, s.End.Sub(s.Start))
			}
		}
		if s.Name != "SELECT no_such_table" && s.Status == "error" {
			t.Errorf("%s: %q failed: %v", route, s.Name, a)
		}
	case strings.HasPrefix(route, "/mysql"):
		text := a["db.query.text"]
		if a["db.system.name"] != "mysql" || a["db.operation.name"] != strings.Fields(s.Name)[0] || strings.ContainsAny(text, "'") {
			t.Errorf("%s: span %q: %v", route, s.Name, a)
		}
		switch s.Name {
		case "SELECT items":
			if text != "SELECT count(*) FROM items WHERE owner = ?" || a["db.response.returned_rows"] != "1" {
				t.Errorf("%s: SELECT span: %v", route, a)
			}
		case "INSERT items":
			// A connection opened after the attach: its handshake names the
			// database, and its greeting the server.
			if text != "INSERT INTO items (id, owner) VALUES (?, ?)" || a["zerotrace.db.rows_affected"] != "1" || a["db.namespace"] != "zerotrace" ||
				!strings.Contains(a["zerotrace.db.server_version"], "MariaDB") {
				t.Errorf("%s: INSERT span: %v", route, a)
			}
		case "SELECT no_such_table":
			if s.Status != "error" || a["error.type"] != "1146" || a["db.response.status_code"] != "1146" {
				t.Errorf("%s: failing query: status %s, %v", route, s.Status, a)
			}
		case "SELECT seq_1_to_20000":
			// 20000 rows over many reads: the span lasts until the last;
			// rows past the capture are not counted, so none are claimed.
			if rows, ok := a["db.response.returned_rows"]; ok && rows != "20000" || s.End.Sub(s.Start) < 100*time.Microsecond {
				t.Errorf("%s: big query: %v, lasted %v", route, a, s.End.Sub(s.Start))
			}
		}
		if s.Name != "SELECT no_such_table" && s.Status == "error" {
			t.Errorf("%s: %q failed: %v", route, s.Name, a)
		}
	default:
		if a["db.system.name"] != "redis" || a["db.operation.name"] != s.Name {
			t.Errorf("%s: span %q: %v", route, s.Name, a)
		}
		wantText := map[string]string{"SET": "SET ? ?", "GET": "GET ?", "INCRBY": "INCRBY ? ?", "LPUSH": "LPUSH ? ?"}[s.Name]
		if a["db.query.text"] != wantText {
			t.Errorf("%s: %s text %q, want %q", route, s.Name, a["db.query.text"], wantText)
		}
		if (s.Name == "LPUSH") != (s.Status == "error") || s.Name == "LPUSH" && a["error.type"] != "WRONGTYPE" {
			t.Errorf("%s: %s status %s, error.type %q", route, s.Name, s.Status, a["error.type"])
		}
	}
}
