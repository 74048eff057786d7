package semconv

import "testing"

func TestRoute(t *testing.T) {
	for pattern, want := range map[string]string{
		"":                         "",
		"/":                        "/",
		"/{$}":                     "/",
		"GET /users/{id}":          "/users/{id}",
		"POST  /items":             "/items",
		"example.com/static/":      "/static/",
		"GET example.com/a/{b...}": "/a/{b...}",
		"GET":                      "",
	} {
		if got := Route(pattern); got != want {
			t.Errorf("Route(%q) = %q, want %q", pattern, got, want)
		}
	}
}
