package export

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/zerotrace/zerotrace/export/internal/spantest"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// benchBatch is how many spans the benchmarks hand a sink per Export: the
// fan-out's largest batch, what a sink gets under load.
const benchBatch = maxBatch

// benchSink measures one sink per span shape. One benchmark operation is one
// span, so ns/op and allocs/op read per span.
func benchSink(b *testing.B, newSink func(b *testing.B) Sink) {
	for _, shape := range spantest.Shapes {
		b.Run(shape.Name, func(b *testing.B) {
			sink := newSink(b)
			batch := spantest.Batch(shape.Make(spantest.Process()), benchBatch)
			ctx := context.Background()
			// Warm up per-process state and buffers: the steady state is
			// what is measured.
			if err := sink.Export(ctx, batch); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := spantest.CPUTime()
			for i := 0; i < b.N; i += len(batch) {
				if err := sink.Export(ctx, batch[:min(len(batch), b.N-i)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := sink.Shutdown(ctx); err != nil {
				b.Fatal(err)
			}
			spantest.ReportCPU(b, cpu)
		})
	}
}

func BenchmarkText(b *testing.B) {
	benchSink(b, func(*testing.B) Sink { return NewText(io.Discard) })
}

func BenchmarkJSONLines(b *testing.B) {
	benchSink(b, func(*testing.B) Sink { return NewJSONLines(io.Discard) })
}

// countingReceiver is an OTLP/HTTP endpoint that only counts requests and
// bytes, so that the benchmark measures the agent's side.
func countingReceiver(tb testing.TB) (*httptest.Server, *atomic.Int64) {
	var bytes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		bytes.Add(n)
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(srv.Close)
	return srv, &bytes
}

// BenchmarkOTLP includes encoding and the upload to a local receiver.
func BenchmarkOTLP(b *testing.B) {
	benchSink(b, func(b *testing.B) Sink {
		srv, _ := countingReceiver(b)
		o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		return o
	})
}

// BenchmarkOTLPEncode is the OTLP sink's encoding alone, without the
// upload: what BenchmarkOTLP spends in the agent before the HTTP client.
func BenchmarkOTLPEncode(b *testing.B) {
	for _, shape := range spantest.Shapes {
		b.Run(shape.Name, func(b *testing.B) {
			batch := spantest.Batch(shape.Make(spantest.Process()), benchBatch)
			enc := otlpBatch{scope: &commonpb.InstrumentationScope{Name: scopeName}}
			b.ReportAllocs()
			cpu := spantest.CPUTime()
			for i := 0; i < b.N; i++ {
				enc.add(batch[i%len(batch)])
				if enc.n == len(batch) {
					enc.seal()
					enc.reset()
				}
			}
			spantest.ReportCPU(b, cpu)
		})
	}
}
