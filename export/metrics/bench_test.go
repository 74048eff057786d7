package metrics

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/export/internal/spantest"
	"github.com/zerotrace/zerotrace/export/servicemap"
)

// BenchmarkExport feeds the RED histogram; one operation is one span.
func BenchmarkExport(b *testing.B) {
	for _, shape := range spantest.Shapes {
		b.Run(shape.Name, func(b *testing.B) {
			r := New()
			batch := spantest.Batch(shape.Make(spantest.Process()), 512)
			ctx := context.Background()
			_ = r.Export(ctx, batch)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := spantest.CPUTime()
			for i := 0; i < b.N; i += len(batch) {
				_ = r.Export(ctx, batch[:min(len(batch), b.N-i)])
			}
			spantest.ReportCPU(b, cpu)
		})
	}
}

// BenchmarkObserveCall feeds the service graph metrics, once per call of
// the service map.
func BenchmarkObserveCall(b *testing.B) {
	r := New()
	c := servicemap.Call{
		Client:        servicemap.Node{ID: "service:gw", Name: "gw", Kind: servicemap.KindService},
		Server:        servicemap.Node{ID: "service:orders", Name: "orders", Kind: servicemap.KindService},
		ClientLatency: 3 * time.Millisecond, ServerLatency: 2 * time.Millisecond,
		TraceID: trace.TraceID{1},
	}
	r.ObserveCall(c)
	b.ReportAllocs()
	cpu := spantest.CPUTime()
	for b.Loop() {
		r.ObserveCall(c)
	}
	spantest.ReportCPU(b, cpu)
}

// BenchmarkExportGenAI feeds the GenAI metrics with a model call's client
// span (tokens, duration, first chunk, per chunk, cost); one operation is
// one span.
func BenchmarkExportGenAI(b *testing.B) {
	r := New()
	batch := spantest.Batch(spantest.GenAIClient(spantest.Process()), 512)
	ctx := context.Background()
	_ = r.Export(ctx, batch)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := spantest.CPUTime()
	for i := 0; i < b.N; i += len(batch) {
		_ = r.Export(ctx, batch[:min(len(batch), b.N-i)])
	}
	spantest.ReportCPU(b, cpu)
}
