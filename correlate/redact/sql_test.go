package redact

import "testing"

func TestSanitizeSQL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// Parameterised queries come back untouched.
		{"SELECT id, name FROM users WHERE id = $1", ""},
		{"SELECT * FROM t1 JOIN col_2 ON t1.a2 = col_2.b3 WHERE x = ? AND y = :name AND z = @p1", ""},
		{"SELECT $1::int4, ?1, :1, @@version, a$b FROM t", ""},
		{"SELECT * FROM `db`.`t2` WHERE `col1` = ?", ""},
		{`SELECT "Col 1", "t""2" FROM "Users"`, ""},
		{"SELECT TRUE, FALSE, NULL", ""},

		// Strings.
		{"SELECT * FROM users WHERE email = 'bob@example.com'", "SELECT * FROM users WHERE email = ?"},
		{"SELECT 'it''s', 'a\\'b', ''", "SELECT ?, ?, ?"},
		{"SELECT E'\\n', N'unicode', X'DEADBEEF', B'0101', U&'d\\0061t', _utf8mb4'abc'", "SELECT ?, ?, ?, ?, ?, ?"},
		{"INSERT INTO t (a, b) VALUES ('x', 'y')", "INSERT INTO t (a, b) VALUES (?, ?)"},
		{"SELECT $$it's a $body$ thing$$, $fn$ SELECT 1 $fn$", "SELECT ?, ?"},
		{"CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 42; END $body$ LANGUAGE plpgsql", "CREATE FUNCTION f() RETURNS int AS ? LANGUAGE plpgsql"},
		{"SELECT '中文' AS 名字", "SELECT ? AS 名字"},

		// Numbers.
		{"SELECT 1, -2, 3.14, .5, 1e10, 2.5E-3, 0xFF, 1_000_000", "SELECT ?, -?, ?, ?, ?, ?, ?, ?"},
		{"SELECT * FROM orders LIMIT 10 OFFSET 20", "SELECT * FROM orders LIMIT ? OFFSET ?"},
		{"UPDATE accounts SET balance = balance - 100.50 WHERE id = 7", "UPDATE accounts SET balance = balance - ? WHERE id = ?"},
		{"SELECT a[1], t.c2 FROM t", "SELECT a[?], t.c2 FROM t"},
		{"SELECT 1abc, 2x FROM t", ""},
		{"SELECT interval '1 day', now() - 3600", "SELECT interval ?, now() - ?"},

		// IN lists.
		{"SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"},
		{"SELECT * FROM t WHERE id in ( 'a' , 'b' ) AND x NOT IN(-1,2.5)", "SELECT * FROM t WHERE id in (?) AND x NOT IN(?)"},
		{"SELECT * FROM t WHERE id IN (?, ?, ?)", "SELECT * FROM t WHERE id IN (?)"},
		{"SELECT * FROM t WHERE id IN (?)", ""},
		{"SELECT * FROM t WHERE id IN ($1, $2)", ""},
		{"SELECT * FROM t WHERE id IN (1, $2)", "SELECT * FROM t WHERE id IN (?, $2)"},
		{"SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE n = 5)", "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE n = ?)"},

		// Comments.
		{"SELECT 1 -- one\nFROM t", "SELECT ? \nFROM t"},
		{"/* traceparent='00-abc' */ SELECT 1", " SELECT ?"},
		{"SELECT/* c */1", "SELECT ?"},
		{"SELECT 1/**/+2", "SELECT ? +?"},
		{"SELECT -/**/-1", "SELECT - -?"},
		{"SELECT /* outer /* nested */ still */ 1", "SELECT  ?"},
		{"SELECT 1 -- trailing", "SELECT ? "},

		// Unterminated input runs to the end.
		{"SELECT 'abc", "SELECT ?"},
		{"SELECT 'a\\", "SELECT ?"},
		{"SELECT $$abc", "SELECT ?"},
		{"SELECT 1 /* abc", "SELECT ? "},
		{`SELECT "abc`, ""},
		{"SELECT * FROM t WHERE id IN (1, 'x", "SELECT * FROM t WHERE id IN (?, ?"},
		{"", ""},
		{"'", "?"},
		{"$", ""},
		{"0x", ""},
	} {
		want := c.want
		if want == "" {
			want = c.in
		}
		got := SanitizeSQL(c.in)
		if got != want {
			t.Errorf("SanitizeSQL(%q)\n got %q\nwant %q", c.in, got, want)
		}
		if again := SanitizeSQL(got); again != got {
			t.Errorf("SanitizeSQL not idempotent on %q: %q", got, again)
		}
	}
}

func TestSanitizeSQLNoAlloc(t *testing.T) {
	q := "SELECT id, name FROM users WHERE id = $1 AND org = ? -- nothing"[:53]
	if allocs := testing.AllocsPerRun(100, func() { _ = SanitizeSQL(q) }); allocs != 0 {
		t.Errorf("%v allocations for a query without literals", allocs)
	}
}

func TestSQLOperation(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT 1", "SELECT"},
		{"select * from t", "SELECT"},
		{"  \n\tInsert INTO t VALUES (1)", "INSERT"},
		{"update t set a = 1", "UPDATE"},
		{"DELETE FROM t", "DELETE"},
		{"/* app=web */ -- note\nSELECT 1", "SELECT"},
		{"(SELECT 1) UNION (SELECT 2)", "SELECT"},
		{"WITH a AS (SELECT 1) SELECT * FROM a", "SELECT"},
		{"WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM t WHERE n < 5) SELECT sum(n) FROM t", "SELECT"},
		{"WITH a AS (SELECT 1), b AS MATERIALIZED (SELECT 2), c AS NOT MATERIALIZED (SELECT ')') DELETE FROM x", "DELETE"},
		{"with moved as (delete from a returning *) insert into b select * from moved", "INSERT"},
		{"WITH broken", ""},
		{"merge into t using s on t.id = s.id when matched then update set a = s.a", "MERGE"},
		{"BEGIN", "BEGIN"},
		{"commit", "COMMIT"},
		{"EXPLAIN ANALYZE SELECT 1", "EXPLAIN"},
		{"REPLACE INTO t VALUES (1)", "REPLACE"},
		{"upsert into t values (1)", "UPSERT"},
		{"frobnicate the db", "FROBNICATE"},
		{"", ""},
		{"-- only a comment", ""},
		{"123", ""},
		{"'select'", ""},
	} {
		if got := SQLOperation(c.in); got != c.want {
			t.Errorf("SQLOperation(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSQLCollection(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT * FROM users WHERE id = $1", "users"},
		{"select id from public.users u join orders o on o.uid = u.id", "public.users"},
		{`SELECT * FROM "Users"`, "Users"},
		{`SELECT * FROM "my schema"."Order ""Items"""`, `my schema.Order "Items"`},
		{"SELECT * FROM `shop`.`orders` WHERE id = ?", "shop.orders"},
		{"SELECT * FROM [dbo].[Customers]", "dbo.Customers"},
		{"SELECT * FROM db.public.t", "db.public.t"},
		{"SELECT (SELECT max(x) FROM inner_t), EXTRACT(YEAR FROM d) FROM outer_t", "outer_t"},
		{"SELECT * FROM ONLY parent", "parent"},
		{"SELECT * FROM (SELECT 1) AS s", ""},
		{"SELECT * FROM generate_series(1, 10)", ""},
		{"SELECT * FROM LATERAL f(x)", ""},
		{"SELECT 1", ""},
		{"SELECT now(); SELECT * FROM t", ""},
		{"WITH a AS (SELECT * FROM x) SELECT * FROM a", "a"},
		{"WITH a AS (SELECT * FROM x) UPDATE y SET v = 1", "y"},
		{"INSERT INTO orders (id, total) VALUES ($1, $2)", "orders"},
		{"insert ignore into `logs` values (1)", "logs"},
		{"INSERT INTO sales.orders(id) VALUES (1)", "sales.orders"},
		{"INSERT OR REPLACE INTO kv VALUES (?, ?)", "kv"},
		{"INSERT t VALUES (1)", "t"},
		{"REPLACE INTO cache (k, v) VALUES (?, ?)", "cache"},
		{"UPDATE accounts SET balance = 0", "accounts"},
		{"UPDATE ONLY accounts SET balance = 0", "accounts"},
		{"UPDATE LOW_PRIORITY IGNORE `t` SET a = 1", "t"},
		{"DELETE FROM sessions WHERE expires < now()", "sessions"},
		{"DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id", "t1"},
		{"MERGE INTO target t USING source s ON t.id = s.id", "target"},
		{"CREATE TABLE IF NOT EXISTS events (id int)", "events"},
		{"CREATE TEMPORARY TABLE tmp (id int)", "tmp"},
		{"DROP TABLE IF EXISTS old_events", "old_events"},
		{"ALTER TABLE users ADD COLUMN age int", "users"},
		{"TRUNCATE TABLE logs", "logs"},
		{"truncate logs", "logs"},
		{"COPY users FROM STDIN", "users"},
		{"CREATE INDEX idx ON t (a)", ""},
		{"BEGIN", ""},
		{"", ""},
		{"SELECT * FROM", ""},
		{"SELECT * FROM a.", ""},
	} {
		if got := SQLCollection(c.in); got != c.want {
			t.Errorf("SQLCollection(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSQLCollectionNoAlloc(t *testing.T) {
	q := "SELECT id FROM public.users WHERE id = $1"
	if allocs := testing.AllocsPerRun(100, func() { _ = SQLCollection(q); _ = SQLOperation(q) }); allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}
