// Package metrics keeps the agent's Prometheus metrics and writes them in
// the OpenMetrics text format, exemplars included:
//
//   - service graph metrics, one series per caller → callee edge
//     (traces_service_graph_request_total, ..._failed_total, and the client
//     and server latency histograms), fed by the service map;
//   - RED metrics per service and route: http.server.request.duration as
//     the histogram http_server_request_duration_seconds, fed by server
//     spans, each bucket with the trace ID of its latest request as an
//     exemplar.
package metrics

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/export/servicemap"
)

// ContentType is what Write produces.
const ContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

// buckets are the histograms' upper bounds, in seconds.
var buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type exemplar struct {
	traceID trace.TraceID // invalid: none yet
	value   float64
	at      time.Time
}

type histogram struct {
	bounds    []float64 // the buckets' upper bounds
	counts    []uint64  // per bucket, not cumulative; the last is +Inf
	exemplars []exemplar
	sum       float64
	count     uint64
}

func newHistogram() *histogram { return newHistogramOf(buckets) }

// newHistogramOf returns a histogram with the upper bounds given.
func newHistogramOf(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1), exemplars: make([]exemplar, len(bounds)+1)}
}

// observe records one value. The trace ID is kept as it is and written
// out only when scraped: formatting it per span would cost an allocation.
func (h *histogram) observe(v float64, traceID trace.TraceID, at time.Time) {
	h.observeN(v, 1, traceID, at)
}

// observeN records n observations of v at once.
func (h *histogram) observeN(v float64, n uint64, traceID trace.TraceID, at time.Time) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i] += n
	h.sum += v * float64(n)
	h.count += n
	if traceID.IsValid() {
		h.exemplars[i] = exemplar{traceID: traceID, value: v, at: at}
	}
}

// labels is a series' label set, in a fixed order.
type labels []string // name, value, name, value, ...

func (l labels) key() string { return strings.Join(l, "\x00") }

func (l labels) String() string {
	var b strings.Builder
	for i := 0; i+1 < len(l); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l[i])
		b.WriteString(`="`)
		b.WriteString(escape(l[i+1]))
		b.WriteByte('"')
	}
	return b.String()
}

func escape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// seriesKey identifies a series of one family. It is a comparable struct
// of the label values, so that finding the series of a span allocates
// nothing; the label names and text are made only when scraped.
type seriesKey interface {
	comparable
	labels() labels
}

// edgeKey is a series of the service graph metrics.
type edgeKey struct{ client, server, connectionType string }

func (k edgeKey) labels() labels {
	return labels{"client", k.client, "server", k.server, "connection_type", k.connectionType}
}

// httpKey is a series of http.server.request.duration.
type httpKey struct {
	service, method, route string
	status                 int // 0: no response
	failed                 bool
}

func (k httpKey) labels() labels {
	status := ""
	if k.status != 0 {
		status = strconv.Itoa(k.status)
	}
	l := labels{"service_name", k.service, "http_request_method", k.method, "http_route", k.route, "http_response_status_code", status}
	if k.failed {
		l = append(l, "error_type", status)
	}
	return l
}

type series[T any] struct {
	labels labels
	value  T
}

// family holds the series of one metric, by label values.
type family[K seriesKey, T any] struct {
	series map[K]T
}

func (f *family[K, T]) get(k K, make func() T) T {
	if v, ok := f.series[k]; ok {
		return v
	}
	if f.series == nil {
		f.series = map[K]T{}
	}
	v := make()
	f.series[k] = v
	return v
}

func (f *family[K, T]) sorted() []series[T] {
	out := make([]series[T], 0, len(f.series))
	for k, v := range f.series {
		out = append(out, series[T]{labels: k.labels(), value: v})
	}
	slices.SortFunc(out, func(a, b series[T]) int { return strings.Compare(a.labels.key(), b.labels.key()) })
	return out
}

type counter struct{ n uint64 }

// Count is one named count the agent keeps about itself.
type Count struct {
	Name  string
	Value uint64
}

// Registry is the agent's metrics. Safe for concurrent use.
type Registry struct {
	// gauges, when set, reads the agent's own health.
	gauges atomic.Pointer[func() []Gauge]
	// losses, when set, reads the agent's loss counters.
	losses atomic.Pointer[func() []Count]

	mu           sync.Mutex
	requests     family[edgeKey, *counter]
	failed       family[edgeKey, *counter]
	clientLat    family[edgeKey, *histogram]
	serverLat    family[edgeKey, *histogram]
	httpDuration family[httpKey, *histogram]
	genAI        genAIMetrics
}

// New returns an empty registry.
func New() *Registry { return &Registry{} }

// SetLosses makes Write serve the counts f returns as zerotrace_lost_total,
// one series per count, labelled by its name.
func (r *Registry) SetLosses(f func() []Count) { r.losses.Store(&f) }

// ObserveCall records one call of the service map (servicemap.Graph.OnCall).
func (r *Registry) ObserveCall(c servicemap.Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := edgeKey{c.Client.Name, c.Server.Name, connectionType(c.Server)}
	r.requests.get(l, func() *counter { return &counter{} }).n++
	if c.Failed {
		r.failed.get(l, func() *counter { return &counter{} }).n++
	}
	now := time.Now()
	r.clientLat.get(l, newHistogram).observe(c.ClientLatency.Seconds(), c.TraceID, now)
	if c.ServerLatency > 0 {
		r.serverLat.get(l, newHistogram).observe(c.ServerLatency.Seconds(), c.TraceID, now)
	}
}

func connectionType(n servicemap.Node) string {
	switch n.Kind {
	case servicemap.KindDatabase:
		return "database"
	case servicemap.KindExternal, servicemap.KindModel:
		return "virtual_node"
	}
	return ""
}

// Name implements export.Sink.
func (r *Registry) Name() string { return "metrics" }

// Shutdown implements export.Sink.
func (r *Registry) Shutdown(context.Context) error { return nil }

// Export implements export.Sink: HTTP server spans feed the RED
// histograms, labelled from their exchange.
func (r *Registry) Export(_ context.Context, spans []*model.Span) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range spans {
		if s.GenAI != nil {
			r.genAI.observe(s)
		}
		if s.Kind != trace.SpanKindServer || s.HTTP == nil {
			continue
		}
		k := httpKey{
			method: semconv.Method(s.HTTP.Method),
			route:  s.HTTP.Route,
			status: s.HTTP.Status,
			failed: s.Status == codes.Error,
		}
		if s.Process != nil {
			k.service = s.Process.ServiceName
		}
		r.httpDuration.get(k, newHistogram).observe(s.End.Sub(s.Start).Seconds(), s.TraceID, s.End)
	}
	return nil
}

func writeCounter[K seriesKey](w io.Writer, name, help string, f *family[K, *counter]) {
	fmt.Fprintf(w, "# TYPE %s counter\n# HELP %s %s\n", name, name, help)
	for _, s := range f.sorted() {
		fmt.Fprintf(w, "%s_total{%s} %d\n", name, s.labels, s.value.n)
	}
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func writeHistogram[K seriesKey](w io.Writer, name, help string, f *family[K, *histogram]) {
	writeHistogramUnit(w, name, "seconds", help, f)
}

// writeHistogramUnit writes a histogram family; unit "" writes no UNIT
// (a count such as tokens has none in OpenMetrics).
func writeHistogramUnit[K seriesKey](w io.Writer, name, unit, help string, f *family[K, *histogram]) {
	fmt.Fprintf(w, "# TYPE %s histogram\n", name)
	if unit != "" {
		fmt.Fprintf(w, "# UNIT %s %s\n", name, unit)
	}
	fmt.Fprintf(w, "# HELP %s %s\n", name, help)
	for _, s := range f.sorted() {
		h := s.value
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i]
			le := "+Inf"
			if i < len(h.bounds) {
				le = formatFloat(h.bounds[i])
			}
			fmt.Fprintf(w, "%s_bucket{%s,le=\"%s\"} %d", name, s.labels, le, cum)
			if ex := h.exemplars[i]; ex.traceID.IsValid() {
				fmt.Fprintf(w, " # {trace_id=\"%s\"} %s %.3f", ex.traceID, formatFloat(ex.value), float64(ex.at.UnixNano())/1e9)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s_sum{%s} %s\n%s_count{%s} %d\n", name, s.labels, formatFloat(h.sum), name, s.labels, h.count)
	}
}

// Write writes every metric in the OpenMetrics text format.
func (r *Registry) Write(w io.Writer) error {
	var b strings.Builder
	// The counts are read outside the lock: reading them asks the kernel.
	if f := r.losses.Load(); f != nil {
		b.WriteString("# TYPE zerotrace_lost counter\n# HELP zerotrace_lost Records, spans or connections the agent lost, by where it lost them.\n")
		for _, c := range (*f)() {
			fmt.Fprintf(&b, "zerotrace_lost_total{reason=\"%s\"} %d\n", escape(c.Name), c.Value)
		}
	}
	r.writeGauges(&b)
	r.mu.Lock()
	defer r.mu.Unlock()
	writeCounter(&b, "traces_service_graph_request", "Requests between two nodes of the service map.", &r.requests)
	writeCounter(&b, "traces_service_graph_request_failed", "Failed requests between two nodes of the service map.", &r.failed)
	writeHistogram(&b, "traces_service_graph_request_client_seconds", "Request durations as the caller saw them.", &r.clientLat)
	writeHistogram(&b, "traces_service_graph_request_server_seconds", "Request durations as the callee saw them.", &r.serverLat)
	writeHistogram(&b, "http_server_request_duration_seconds", "Duration of HTTP server requests (http.server.request.duration).", &r.httpDuration)
	r.genAI.write(&b)
	b.WriteString("# EOF\n")
	_, err := io.WriteString(w, b.String())
	return err
}
