package export

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// blockingSink never returns from Export until released.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (*blockingSink) Name() string { return "blocking" }
func (b *blockingSink) Export(_ context.Context, spans []*model.Span) error {
	<-b.release
	b.mu.Lock()
	b.got += len(spans)
	b.mu.Unlock()
	return nil
}
func (*blockingSink) Shutdown(context.Context) error { return nil }

type countSink struct {
	mu  sync.Mutex
	got int
}

func (*countSink) Name() string { return "count" }
func (c *countSink) Export(_ context.Context, spans []*model.Span) error {
	c.mu.Lock()
	c.got += len(spans)
	c.mu.Unlock()
	return nil
}
func (*countSink) Shutdown(context.Context) error { return nil }

// A stuck sink loses its own spans, counted, and never holds up another.
func TestFanoutIsolatesSlowSinks(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stuck := &blockingSink{release: make(chan struct{})}
	fast := &countSink{}
	f := NewFanout(log, 100, stuck, fast)
	in := make(chan *model.Span)
	done := make(chan struct{})
	go func() { f.Run(in, time.Second); close(done) }()
	const n = 1000
	for i := range n {
		in <- sampleSpan()
		if (i+1)%50 != 0 {
			continue
		}
		// Let the fast sink catch up so that only the stuck one drops.
		deadline := time.Now().Add(5 * time.Second)
		for {
			fast.mu.Lock()
			got := fast.got
			fast.mu.Unlock()
			if got == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("fast sink got %d of %d spans while the other sink was stuck", got, i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}
	close(stuck.release)
	close(in)
	<-done
	st := f.Stats()
	if st[0].Dropped.Load() == 0 || st[0].Delivered.Load()+st[0].Dropped.Load() != n {
		t.Errorf("stuck sink: delivered %d + dropped %d, want a total of %d with some dropped",
			st[0].Delivered.Load(), st[0].Dropped.Load(), n)
	}
	if st[1].Dropped.Load() != 0 || st[1].Delivered.Load() != n {
		t.Errorf("fast sink: delivered %d, dropped %d; want %d and 0", st[1].Delivered.Load(), st[1].Dropped.Load(), n)
	}
}

// The OTLP sink must keep the correlator's IDs and parent, and the process's
// resource, through the SDK.
func TestOTLPKeepsIDs(t *testing.T) {
	reqs := make(chan *coltrace.ExportTraceServiceRequest, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("bad OTLP body: %v", err)
		}
		reqs <- &req
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer srv.Close()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o, err := NewOTLP(context.Background(), log, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := sampleSpan()
	child := sampleSpan()
	child.Process = s.Process
	child.ParentSpanID = s.SpanID
	child.SpanID[0] = 0x01
	if err := o.Export(context.Background(), []*model.Span{s, child}); err != nil {
		t.Fatal(err)
	}
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got int
	for len(reqs) > 0 {
		req := <-reqs
		for _, rs := range req.ResourceSpans {
			var svc string
			for _, kv := range rs.Resource.Attributes {
				if kv.Key == "service.name" {
					svc = kv.Value.GetStringValue()
				}
			}
			if svc != "orders" {
				t.Errorf("service.name %q, want orders", svc)
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					got++
					want := s
					if sp.SpanId[0] == 0x01 {
						want = child
					}
					if string(sp.TraceId) != string(want.TraceID[:]) || string(sp.SpanId) != string(want.SpanID[:]) {
						t.Errorf("ids changed: trace %x span %x", sp.TraceId, sp.SpanId)
					}
					if want == child && string(sp.ParentSpanId) != string(s.SpanID[:]) {
						t.Errorf("child's parent %x, want %x", sp.ParentSpanId, s.SpanID)
					}
					if sp.StartTimeUnixNano != uint64(want.Start.UnixNano()) || sp.EndTimeUnixNano != uint64(want.End.UnixNano()) {
						t.Errorf("times changed")
					}
				}
			}
		}
	}
	if got != 2 {
		t.Errorf("collector received %d spans, want 2", got)
	}
	if o.Exported() != 2 || o.Failed() != 0 {
		t.Errorf("exported %d failed %d, want 2 and 0", o.Exported(), o.Failed())
	}
}
