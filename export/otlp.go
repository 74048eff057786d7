package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// OTLP sends spans over OTLP/HTTP with the OpenTelemetry SDK.
//
// The SDK creates span and trace IDs itself; ours come from the correlator
// (they must match what other agents and injected headers say), so an ID
// generator hands the SDK the IDs carried in the context of each Start.
// Each traced process has its own resource, hence its own TracerProvider;
// all of them share one exporter and so one connection pool.
type OTLP struct {
	log       *slog.Logger
	exporter  *countingExporter
	mu        sync.Mutex
	providers map[*model.Process]*sdktrace.TracerProvider
	tracers   map[*model.Process]trace.Tracer
}

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

// NewOTLP returns an OTLP sink. With endpoint empty the exporter follows the
// standard OTEL_EXPORTER_OTLP_* environment variables.
func NewOTLP(ctx context.Context, log *slog.Logger, endpoint string) (*OTLP, error) {
	opts := []otlptracehttp.Option{
		// Retry briefly: while the exporter retries, spans wait in the
		// bounded queue in front of it, and past that they are dropped and
		// counted rather than piling up.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled:         true,
			InitialInterval: 500 * time.Millisecond,
			MaxInterval:     5 * time.Second,
			MaxElapsedTime:  30 * time.Second,
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
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	o := &OTLP{
		log:       log,
		exporter:  &countingExporter{inner: exp, log: log},
		providers: make(map[*model.Process]*sdktrace.TracerProvider),
		tracers:   make(map[*model.Process]trace.Tracer),
	}
	// The SDK reports export failures through the global handler; they are
	// already counted and logged by countingExporter.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Debug("opentelemetry sdk", "err", err)
	}))
	return o, nil
}

// Name implements Sink.
func (*OTLP) Name() string { return "otlp" }

type idsKey struct{}

type spanIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// fixedIDs gives the SDK the IDs found in the context.
type fixedIDs struct{}

func (fixedIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	ids, _ := ctx.Value(idsKey{}).(spanIDs)
	return ids.trace, ids.span
}

func (fixedIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	ids, _ := ctx.Value(idsKey{}).(spanIDs)
	return ids.span
}

func (o *OTLP) tracer(p *model.Process) trace.Tracer {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t, ok := o.tracers[p]; ok {
		return t
	}
	// attribute.NewSet sorts the slice it is given in place, and the
	// process's resource slice is read concurrently by the other sinks:
	// hand it a copy.
	res := resource.NewSchemaless(slices.Clone(p.Resource())...)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(fixedIDs{}),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanLimits(sdktrace.NewSpanLimits()),
		sdktrace.WithBatcher(sharedExporter{o.exporter},
			sdktrace.WithBlocking(),
			sdktrace.WithMaxQueueSize(8192),
			sdktrace.WithMaxExportBatchSize(maxBatch),
			sdktrace.WithBatchTimeout(500*time.Millisecond),
		),
	)
	t := tp.Tracer("github.com/zerotrace/zerotrace", trace.WithInstrumentationVersion(model.Version))
	o.providers[p] = tp
	o.tracers[p] = t
	return t
}

// Export implements Sink.
func (o *OTLP) Export(ctx context.Context, spans []*model.Span) error {
	for _, s := range spans {
		if s.Process == nil {
			continue
		}
		t := o.tracer(s.Process)
		sctx := context.WithValue(ctx, idsKey{}, spanIDs{trace: s.TraceID, span: s.SpanID})
		if s.ParentSpanID.IsValid() {
			// An invalid tracestate is dropped rather than failing the span.
			ts, _ := trace.ParseTraceState(s.TraceState)
			parent := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID:    s.TraceID,
				SpanID:     s.ParentSpanID,
				TraceFlags: trace.FlagsSampled,
				TraceState: ts,
				Remote:     true,
			})
			sctx = trace.ContextWithRemoteSpanContext(sctx, parent)
		}
		_, span := t.Start(sctx, validUTF8(s.Name),
			trace.WithTimestamp(s.Start),
			trace.WithSpanKind(s.Kind),
			trace.WithAttributes(validAttrs(s.Attributes)...),
		)
		if s.Status != 0 {
			span.SetStatus(s.Status, s.StatusMsg)
		}
		span.End(trace.WithTimestamp(s.End))
	}
	return nil
}

// validAttrs makes sure every string is UTF-8: the protobuf encoder rejects
// the whole batch otherwise. Decoding already guarantees it; this keeps one
// bad value from costing a batch should another source forget.
func validAttrs(kvs []attribute.KeyValue) []attribute.KeyValue {
	for i, kv := range kvs {
		if kv.Value.Type() == attribute.STRING && !utf8.ValidString(kv.Value.AsString()) {
			fixed := slices.Clone(kvs)
			for j := i; j < len(fixed); j++ {
				if fixed[j].Value.Type() == attribute.STRING {
					fixed[j] = fixed[j].Key.String(validUTF8(fixed[j].Value.AsString()))
				}
			}
			return fixed
		}
	}
	return kvs
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Shutdown implements Sink: it flushes every provider, then closes the
// exporter.
func (o *OTLP) Shutdown(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	for _, tp := range o.providers {
		errs = append(errs, tp.Shutdown(ctx))
	}
	errs = append(errs, o.exporter.inner.Shutdown(ctx))
	if n := o.exporter.failed.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("%d spans could not be delivered to the OTLP endpoint", n))
	}
	return errors.Join(errs...)
}

// Failed returns how many spans the exporter could not deliver.
func (o *OTLP) Failed() uint64 { return o.exporter.failed.Load() }

// Exported returns how many spans the exporter delivered.
func (o *OTLP) Exported() uint64 { return o.exporter.exported.Load() }

// countingExporter counts delivered and failed spans and reports failures
// in the log at most every 10 seconds.
type countingExporter struct {
	inner    sdktrace.SpanExporter
	log      *slog.Logger
	exported atomic.Uint64
	failed   atomic.Uint64
	lastLog  atomic.Int64
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.inner.ExportSpans(ctx, spans)
	if err != nil {
		c.failed.Add(uint64(len(spans)))
		now := time.Now().UnixNano()
		if last := c.lastLog.Load(); now-last > int64(10*time.Second) && c.lastLog.CompareAndSwap(last, now) {
			c.log.Error("OTLP export failed; spans are being dropped", "spans", len(spans), "failed_total", c.failed.Load(), "err", err)
		}
		return err
	}
	c.exported.Add(uint64(len(spans)))
	return nil
}

func (c *countingExporter) Shutdown(ctx context.Context) error { return c.inner.Shutdown(ctx) }

// sharedExporter lets several providers use one exporter: each provider
// shuts its exporter down, but this one is closed once, by OTLP.Shutdown.
type sharedExporter struct{ *countingExporter }

func (sharedExporter) Shutdown(context.Context) error { return nil }
