package protocols

import (
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// TestLastStatement: what the memory gives is what semconv gives, for a
// statement repeated or not.
func TestLastStatement(t *testing.T) {
	var l LastStatement
	for _, text := range []string{"SELECT * FROM a WHERE id = 1", "SELECT * FROM a WHERE id = 1", "DELETE FROM b WHERE x = 'y'", "", "SELECT * FROM a WHERE id = 1"} {
		got := l.Text([]byte(text))
		if got != text {
			t.Fatalf("text %q, want %q", got, text)
		}
		var d model.DB
		l.SetSQL(&d, got)
		want := semconv.SQL("postgresql", text)
		if d.Query != want.Query || d.Operation != want.Operation || d.Collection != want.Collection {
			t.Errorf("%q: %q %q %q, want %q %q %q", text, d.Query, d.Operation, d.Collection, want.Query, want.Operation, want.Collection)
		}
	}
	// A repeated text is the remembered string, not a copy.
	b := []byte("SELECT * FROM a WHERE id = 1")
	if testing.AllocsPerRun(10, func() { _ = l.Text(b) }) != 0 {
		t.Errorf("a repeated text allocated")
	}
}
