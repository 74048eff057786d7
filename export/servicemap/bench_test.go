package servicemap

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/export/internal/spantest"
)

// BenchmarkExport measures the map per span: an HTTP client span and the
// server span it caused (one edge between two services per pair), and
// database spans (one edge each). One operation is one span.
func BenchmarkExport(b *testing.B) {
	gw := model.NewProcess(1, "/srv/bin/gateway", "", "go1.26.8")
	orders := spantest.Process()
	client := spantest.Client(gw)
	server := spantest.Server(orders)
	server.ParentSpanID = client.SpanID
	// A model server's span, its caller not traced: the node's model
	// calls.
	genAI := spantest.GenAIClient(orders)
	genAI.Kind, genAI.ParentSpanID = trace.SpanKindServer, trace.SpanID{}
	shapes := []struct {
		name  string
		spans []*model.Span
	}{
		{"client+server", []*model.Span{client, server}},
		{"db", []*model.Span{spantest.DB(orders)}},
		{"genai-server", []*model.Span{genAI}},
	}
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			g := New(5 * 60e9)
			var batch []*model.Span
			for len(batch) < 512 {
				batch = append(batch, shape.spans...)
			}
			ctx := context.Background()
			_ = g.Export(ctx, batch)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := spantest.CPUTime()
			for i := 0; i < b.N; i += len(batch) {
				_ = g.Export(ctx, batch[:min(len(batch), b.N-i)])
			}
			spantest.ReportCPU(b, cpu)
		})
	}
}
