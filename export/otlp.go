package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// OTLP sends spans over OTLP/HTTP.
//
// It encodes the OTLP request itself, straight from model.Span (see
// otlpBatch), and uploads it with the OpenTelemetry exporter's HTTP client,
// which honours every OTEL_EXPORTER_OTLP_* variable. Going through the
// SDK's tracer would cost a TracerProvider (and its batching goroutine) per
// traced process, since the resource belongs to the provider, and about
// fifty allocations per span; here every process's spans share one batch,
// grouped by resource when uploaded, in buffers reused from batch to batch.
// The IDs are the correlator's, as other agents and injected headers know
// them.
type OTLP struct {
	log    *slog.Logger
	client otlptrace.Client

	// mu guards batch: Export and the flusher fill and upload it.
	mu    sync.Mutex
	batch otlpBatch

	exported atomic.Uint64
	failed   atomic.Uint64
	lastLog  atomic.Int64

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

const (
	// batchTimeout is the longest a span waits for its batch to fill.
	batchTimeout = 200 * time.Millisecond
	// exportTimeout bounds one upload, retries included.
	exportTimeout = 30 * time.Second
	// maxAttributes is the SDK's default attribute count limit per span;
	// the rest are dropped and counted in the span.
	maxAttributes = 128
	// scopeName names the instrumentation scope of every span.
	scopeName = "github.com/zerotrace/zerotrace"
)

// OTLPEndpointURL turns a user-given endpoint ("http://host:4318",
// "host:4318" or a full ".../v1/traces" URL) into the traces URL.
func OTLPEndpointURL(endpoint string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid OTLP endpoint %q: want a URL such as http://localhost:4318", endpoint)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("invalid OTLP endpoint %q: the scheme must be http or https", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// NewOTLP returns an OTLP sink. With endpoint empty the client follows the
// standard OTEL_EXPORTER_OTLP_* environment variables.
func NewOTLP(ctx context.Context, log *slog.Logger, endpoint string) (*OTLP, error) {
	opts := []otlptracehttp.Option{
		// Retry briefly: while an upload retries, spans wait in the
		// bounded queue in front of the sink, and past that they are
		// dropped and counted rather than piling up.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled:         true,
			InitialInterval: 500 * time.Millisecond,
			MaxInterval:     5 * time.Second,
			MaxElapsedTime:  exportTimeout,
		}),
		otlptracehttp.WithTimeout(10 * time.Second),
	}
	if endpoint != "" {
		u, err := OTLPEndpointURL(endpoint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	}
	// The encoding is chosen here, from the variables the client would
	// read, so that the batch is built for it (see otlpBatch).
	json := otlpJSON()
	if json {
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	} else {
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
	}
	client := otlptracehttp.NewClient(opts...)
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	o := &OTLP{
		log:    log,
		client: client,
		batch:  otlpBatch{scope: &commonpb.InstrumentationScope{Name: scopeName, Version: model.Version}, json: json},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go o.flusher()
	return o, nil
}

// otlpJSON tells whether the OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL
// variables ask for OTLP/JSON, read as the exporter's client reads them.
func otlpJSON() bool {
	p := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if p == "" {
		p = strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	return p == "http/json"
}

// Name implements Sink.
func (*OTLP) Name() string { return "otlp" }

// Export implements Sink: it adds the spans to the batch, uploading it
// whenever it is full. Upload failures are counted (Failed), not returned:
// the spans are dropped.
func (o *OTLP) Export(ctx context.Context, spans []*model.Span) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range spans {
		if s.Process == nil {
			continue
		}
		o.batch.add(s)
		if o.batch.n >= maxBatch {
			_ = o.flushLocked(ctx)
		}
	}
	return nil
}

// flusher uploads what waits, so that no span waits much longer than
// batchTimeout when traffic is light.
func (o *OTLP) flusher() {
	defer close(o.done)
	t := time.NewTicker(batchTimeout)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.mu.Lock()
			_ = o.flushLocked(context.Background())
			o.mu.Unlock()
		}
	}
}

// flushLocked uploads the batch and empties it, counting its spans as
// exported or failed. The client marshals the messages before it returns,
// so they can be reused right after.
func (o *OTLP) flushLocked(ctx context.Context) error {
	n := o.batch.n
	if n == 0 {
		return nil
	}
	o.batch.seal()
	ctx, cancel := context.WithTimeout(ctx, exportTimeout)
	err := o.client.UploadTraces(ctx, o.batch.out)
	cancel()
	o.batch.reset()
	if err != nil {
		o.failed.Add(uint64(n))
		now := time.Now().UnixNano()
		if last := o.lastLog.Load(); now-last > int64(10*time.Second) && o.lastLog.CompareAndSwap(last, now) {
			o.log.Error("OTLP export failed; spans are being dropped", "spans", n, "failed_total", o.failed.Load(), "err", err)
		}
		return err
	}
	o.exported.Add(uint64(n))
	return nil
}

// Shutdown implements Sink: it stops the flusher, uploads what is left and
// closes the client.
func (o *OTLP) Shutdown(ctx context.Context) error {
	o.stopOnce.Do(func() { close(o.stop) })
	<-o.done
	o.mu.Lock()
	// A failure is counted, and reported below with the others.
	_ = o.flushLocked(ctx)
	o.mu.Unlock()
	errs := []error{o.client.Stop(ctx)}
	if n := o.failed.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("%d spans could not be delivered to the OTLP endpoint", n))
	}
	return errors.Join(errs...)
}

// Failed returns how many spans the exporter could not deliver.
func (o *OTLP) Failed() uint64 { return o.failed.Load() }

// Exported returns how many spans the exporter delivered.
func (o *OTLP) Exported() uint64 { return o.exported.Load() }

// processes is how many processes the sink keeps state for.
func (o *OTLP) processes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.batch.resources.len()
}
