package export

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// TestOTLPLeavesResourceAlone: building the OTLP resource for a process must
// not reorder the process's shared resource attributes, which the JSON sink
// reads at the same time (attribute.NewSet, say, sorts what it is given in
// place).
func TestOTLPLeavesResourceAlone(t *testing.T) {
	p := model.NewProcess(42, "/usr/bin/svc", "", "go1.26.0")
	before := append(p.Resource()[:0:0], p.Resource()...)
	o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Shutdown(context.Background())
	var wg sync.WaitGroup
	var out bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		j := NewJSONLines(&out)
		_ = j.Export(context.Background(), []*model.Span{{Process: p, Start: time.Now(), End: time.Now()}})
	}()
	o.mu.Lock()
	o.batch.resource(p)
	o.mu.Unlock()
	wg.Wait()
	for i, kv := range p.Resource() {
		if kv != before[i] {
			t.Fatalf("resource attribute %d changed from %v to %v", i, before[i], kv)
		}
	}
	if !strings.Contains(out.String(), `"host.name"`) {
		t.Errorf("JSON line lacks host.name: %s", out.String())
	}
}
