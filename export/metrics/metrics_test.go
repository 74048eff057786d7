package metrics

import (
	"strings"
	"testing"
)

// TestWriteLosses checks the agent's loss counters on /metrics: absent until
// set, read afresh on every scrape, zeros included, labels escaped.
func TestWriteLosses(t *testing.T) {
	r := New()
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "zerotrace_lost") {
		t.Errorf("losses written before SetLosses:\n%s", b.String())
	}

	n := uint64(0)
	r.SetLosses(func() []Count {
		n++
		return []Count{{Name: "kernel_ringbuf_full", Value: n}, {Name: `odd"name`, Value: 0}}
	})
	for _, want := range []string{"1", "2"} {
		b.Reset()
		if err := r.Write(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		line := `zerotrace_lost_total{reason="kernel_ringbuf_full"} ` + want
		if !strings.Contains(out, line+"\n") {
			t.Errorf("missing %q (each scrape reads the counts afresh):\n%s", line, out)
		}
		if !strings.Contains(out, `zerotrace_lost_total{reason="odd\"name"} 0`+"\n") {
			t.Errorf("zero count not written, or label not escaped:\n%s", out)
		}
		if !strings.HasPrefix(out, "# TYPE zerotrace_lost counter\n") || !strings.HasSuffix(out, "# EOF\n") {
			t.Errorf("not one well-formed family before # EOF:\n%s", out)
		}
	}
}
