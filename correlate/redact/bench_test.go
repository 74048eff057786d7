package redact

import "testing"

// spanValues are the attribute values of a typical HTTP server span with a
// database child: mostly clean, with digits, addresses, paths and a query.
var spanValues = []string{
	"GET",
	"/api/v1/users/42/orders",
	"/api/v1/users/{id}/orders",
	"http",
	"localhost",
	"8080",
	"127.0.0.1",
	"54321",
	"curl/8.5.0",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"1.1",
	"200",
	"page=2&limit=50&sort=created_at",
	"postgresql",
	"SELECT id, name FROM users WHERE id = $1",
}

// BenchmarkSpanAttributes redacts the values of one typical span.
func BenchmarkSpanAttributes(b *testing.B) {
	r, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range spanValues {
			if out := r.String(v); len(out) != len(v) {
				b.Fatalf("clean value changed: %q -> %q", v, out)
			}
		}
	}
}

// BenchmarkSpanAttributesDirty is the same span with a few secrets in it.
func BenchmarkSpanAttributesDirty(b *testing.B) {
	r, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	values := append([]string(nil), spanValues...)
	values[12] = "page=2&token=abcdef&email=john@example.com"
	values[1] = "/api/v1/users/13812345678/orders"
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range values {
			_ = r.String(v)
		}
	}
}

// BenchmarkURLQuery redacts a clean query string.
func BenchmarkURLQuery(b *testing.B) {
	r, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.URLQuery("page=2&limit=50&sort=created_at&q=hello%20world")
	}
}

var sqlBench = []string{
	"SELECT id, name, email FROM users WHERE id = $1 AND deleted_at IS NULL",
	"INSERT INTO orders (user_id, total, note) VALUES (42, 19.99, 'gift for mum')",
	"UPDATE accounts SET balance = balance - 100 WHERE id IN (1, 2, 3, 4) -- transfer",
	"/* app=checkout */ WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT count(*) FROM recent",
}

// BenchmarkSanitizeSQL sanitises a mix of parameterised and literal queries.
func BenchmarkSanitizeSQL(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, q := range sqlBench {
			_ = SanitizeSQL(q)
		}
	}
}

// BenchmarkSanitizeSQLClean is the common case of a parameterised query.
func BenchmarkSanitizeSQLClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = SanitizeSQL(sqlBench[0])
	}
}

// BenchmarkSQLOperationCollection extracts both names from each query.
func BenchmarkSQLOperationCollection(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, q := range sqlBench {
			_ = SQLOperation(q)
			_ = SQLCollection(q)
		}
	}
}
