package export

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/export/internal/spantest"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// benchBatch is how many spans the benchmarks hand a sink per Export: the
// fan-out's largest batch, what a sink gets under load.
const benchBatch = maxBatch

// benchSink measures one sink per span shape. One benchmark operation is one
// span, so ns/op and allocs/op read per span; cpu-ns/op is the process's
// CPU time per span. When receiver is given, it tells how much of that CPU
// time went to receiving what the sink sent, which agent-cpu-ns/op leaves
// out.
func benchSink(b *testing.B, newSink func(b *testing.B) Sink, receiver func() time.Duration) {
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
			var received time.Duration
			if receiver != nil {
				received = receiver()
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
			cpu = spantest.ReportCPU(b, cpu)
			if receiver != nil {
				b.ReportMetric(float64(cpu-(receiver()-received))/float64(b.N), "agent-cpu-ns/op")
			}
		})
	}
}

func BenchmarkText(b *testing.B) {
	benchSink(b, func(*testing.B) Sink { return NewText(io.Discard) }, nil)
}

func BenchmarkJSONLines(b *testing.B) {
	benchSink(b, func(*testing.B) Sink { return NewJSONLines(io.Discard) }, nil)
}

// countingReceiver is an OTLP/HTTP endpoint that only counts the bytes it
// receives, so that the benchmark measures the agent's side. It also counts
// the CPU time its handler spends reading (receiver), which is the
// collector's work, not the agent's.
func countingReceiver(tb testing.TB) (*httptest.Server, *atomic.Int64) {
	srv, bytes, _ := countingReceiverCPU(tb)
	return srv, bytes
}

func countingReceiverCPU(tb testing.TB) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	var bytes, receiver atomic.Int64
	buf := make([]byte, 1<<20) // requests come one at a time
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU()
		for {
			n, err := r.Body.Read(buf)
			bytes.Add(int64(n))
			if err != nil {
				break
			}
		}
		receiver.Add(int64(threadCPU() - start))
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(srv.Close)
	return srv, &bytes, &receiver
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOTLP includes encoding and the upload to a local receiver. Its
// agent-cpu-ns/op leaves out the receiver's reading.
func BenchmarkOTLP(b *testing.B) {
	var receiver *atomic.Int64
	benchSink(b, func(b *testing.B) Sink {
		var srv *httptest.Server
		srv, _, receiver = countingReceiverCPU(b)
		o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		return o
	}, func() time.Duration { return time.Duration(receiver.Load()) })
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
