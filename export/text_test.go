package export

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/export/internal/spantest"
)

// The text line comes from the typed exchange: status, the server's path,
// the peer of HTTP and database spans alike.
func TestTextReadsExchange(t *testing.T) {
	p := spantest.Process()
	for _, c := range []struct {
		span      *model.Span
		want, not []string
	}{
		{spantest.Server(p), []string{"orders[4242] server GET /users/{id} 200 1.234ms url.path=/users/7 peer=10.0.0.1:51234 trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba90202"}, []string{"ERROR"}},
		{spantest.Client(p), []string{" client GET 200 0.456ms peer=10.0.0.3:9000 trace="}, []string{"url.path"}},
		{spantest.DB(p), []string{" client SELECT users - 0.321ms peer=10.0.0.5:5432 trace="}, nil},
	} {
		line := FormatText(c.span)
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("text line %q lacks %q", line, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(line, n) {
				t.Errorf("text line %q has %q", line, n)
			}
		}
	}
}

func TestTextAllocations(t *testing.T) {
	txt := NewText(io.Discard)
	batch := []*model.Span{spantest.Server(spantest.Process())}
	_ = txt.Export(context.Background(), batch)
	if n := testing.AllocsPerRun(100, func() { _ = txt.Export(context.Background(), batch) }); n > 0 {
		t.Errorf("text sink: %v allocations per span, want 0", n)
	}
}
