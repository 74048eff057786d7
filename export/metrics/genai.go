package metrics

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// The GenAI metrics, from spans with a GenAI exchange. A CLIENT span (a
// service calling a model) feeds the conventions' client metrics, a
// SERVER span (a model server answering) their server metrics; both feed
// the token usage (the server's under zerotrace's name, since the
// conventions define none for it) and, when priced, the cost counter.
//
// Model names, error types and server addresses come from outside (a
// request's body, a server's answer): each label has a bounded set of
// values, past which a new value is written "_OTHER" and counted in
// zerotrace_gen_ai_label_overflow_total, so that a client that makes up
// model names cannot grow the agent's memory or the scrape.

// otherValue replaces a label value past its bound.
const otherValue = "_OTHER"

// Bounds of the distinct values of the labels that come from outside.
const (
	maxGenAIModels  = 64
	maxGenAIServers = 64
	maxGenAIErrors  = 32
)

// genAIKey is a series of the GenAI histograms.
type genAIKey struct {
	service, operation, provider string
	requestModel, responseModel  string
	serverAddress                string
	serverPort                   int
	tokenType                    string // token usage only
	errorType                    string // durations only
}

func (k genAIKey) labels() labels {
	port := ""
	if k.serverPort != 0 {
		port = strconv.Itoa(k.serverPort)
	}
	l := labels{"service_name", k.service, "gen_ai_operation_name", k.operation, "gen_ai_provider_name", k.provider}
	if k.tokenType != "" {
		l = append(l, "gen_ai_token_type", k.tokenType)
	}
	l = append(l, "gen_ai_request_model", k.requestModel, "gen_ai_response_model", k.responseModel,
		"server_address", k.serverAddress, "server_port", port)
	if k.errorType != "" {
		l = append(l, "error_type", k.errorType)
	}
	return l
}

// costKey is a series of the cost counter: per service, provider and
// model, and which side of the call the span was (a client pays; a model
// server's side says what its answers would have cost).
type costKey struct {
	service, provider, requestModel, responseModel, kind string
}

func (k costKey) labels() labels {
	return labels{"service_name", k.service, "gen_ai_provider_name", k.provider,
		"gen_ai_request_model", k.requestModel, "gen_ai_response_model", k.responseModel, "span_kind", k.kind}
}

// floatCounter is a counter of a real quantity (dollars), with the trace
// of its latest increment as exemplar.
type floatCounter struct {
	v  float64
	ex exemplar
}

// bounded holds the values a label has taken, at most max of them.
type bounded struct {
	max      int
	seen     map[string]string // the value, copied once
	overflow uint64
}

// value is v as a label value: v itself (the copy kept), or otherValue
// once max other values were seen.
func (b *bounded) value(v string) string {
	if v == "" {
		return ""
	}
	if k, ok := b.seen[v]; ok {
		return k
	}
	if len(b.seen) >= b.max {
		b.overflow++
		return otherValue
	}
	if b.seen == nil {
		b.seen = map[string]string{}
	}
	k := strings.Clone(v)
	b.seen[k] = k
	return k
}

// genAIMetrics are the GenAI families; the Registry's lock guards them.
type genAIMetrics struct {
	clientTokens, clientDuration, clientFirstChunk, clientPerChunk family[genAIKey, *histogram]
	serverTokens, serverDuration, serverFirstToken, serverPerToken family[genAIKey, *histogram]
	cost                                                           family[costKey, *floatCounter]

	models, servers, errors bounded
}

func newBuckets(b []float64) func() *histogram {
	return func() *histogram { return newHistogramOf(b) }
}

var (
	newTokenHistogram      = newBuckets(semconv.GenAITokenBuckets)
	newDurationHistogram   = newBuckets(semconv.GenAIDurationBuckets)
	newFirstTokenHistogram = newBuckets(semconv.GenAIFirstTokenBuckets)
	newPerTokenHistogram   = newBuckets(semconv.GenAIPerTokenBuckets)
)

// observe records one span with a GenAI exchange.
func (m *genAIMetrics) observe(s *model.Span) {
	if s.Kind != trace.SpanKindClient && s.Kind != trace.SpanKindServer {
		return
	}
	if m.models.max == 0 {
		m.models.max, m.servers.max, m.errors.max = maxGenAIModels, maxGenAIServers, maxGenAIErrors
	}
	g := s.GenAI
	server := s.Kind == trace.SpanKindServer
	k := genAIKey{
		operation:     g.Operation,
		provider:      g.Provider,
		requestModel:  m.models.value(g.RequestModel),
		responseModel: m.models.value(g.ResponseModel),
	}
	if s.Process != nil {
		k.service = s.Process.ServiceName
	}
	if s.HTTP != nil {
		host, port := semconv.HTTPServer(s.HTTP, s.Kind)
		k.serverAddress, k.serverPort = m.servers.value(host), port
	}
	failed := s.Status == codes.Error
	at, id := s.End, s.TraceID

	tokens, duration, firstChunk, perChunk := &m.clientTokens, &m.clientDuration, &m.clientFirstChunk, &m.clientPerChunk
	if server {
		tokens, duration, firstChunk, perChunk = &m.serverTokens, &m.serverDuration, &m.serverFirstToken, &m.serverPerToken
	}
	for _, u := range [...]struct {
		typ string
		n   int64
	}{{semconv.GenAITokenTypeInput, g.Usage.Input}, {semconv.GenAITokenTypeOutput, g.Usage.Output}} {
		if u.n >= 0 {
			tk := k
			tk.tokenType = u.typ
			tokens.get(tk, newTokenHistogram).observe(float64(u.n), id, at)
		}
	}
	if g.Priced {
		p := m.cost.get(costKey{k.service, k.provider, k.requestModel, k.responseModel, kindName(server)}, func() *floatCounter { return &floatCounter{} })
		p.v += g.CostUSD
		p.ex = exemplar{traceID: id, value: g.CostUSD, at: at}
	}

	dk := k
	if failed {
		dk.errorType = m.errors.value(errorType(s))
	}
	duration.get(dk, newDurationHistogram).observe(s.End.Sub(s.Start).Seconds(), id, at)

	if server {
		// Time to the first token and per output token after it, of
		// successful answers whose tokens were seen stream out.
		first := g.TokenStart()
		if failed || first.IsZero() || first.Before(s.Start) {
			return
		}
		firstChunk.get(k, newFirstTokenHistogram).observe(first.Sub(s.Start).Seconds(), id, at)
		end := g.LastChunk
		if end.IsZero() {
			end = s.End
		}
		if n := g.Usage.Output - 1; n > 0 && end.After(first) {
			perChunk.get(k, newPerTokenHistogram).observeN(end.Sub(first).Seconds()/float64(n), uint64(n), id, at)
		}
		return
	}
	// The client's: from the request to the first chunk, then the time
	// between chunks. Only the first and the last chunk's times are kept,
	// so each call adds its mean gap once per chunk after the first: sum
	// and count are exact, the distribution is one of calls' means.
	if g.FirstChunk.IsZero() || g.FirstChunk.Before(s.Start) {
		return
	}
	firstChunk.get(k, newFirstTokenHistogram).observe(g.FirstChunk.Sub(s.Start).Seconds(), id, at)
	if n := g.Chunks - 1; n > 0 && g.LastChunk.After(g.FirstChunk) {
		perChunk.get(k, newPerTokenHistogram).observeN(g.LastChunk.Sub(g.FirstChunk).Seconds()/float64(n), uint64(n), id, at)
	}
}

func kindName(server bool) string {
	if server {
		return "server"
	}
	return "client"
}

// errorType is the span's error.type attribute (the API's error, else
// HTTP's), "_OTHER" when it has none.
func errorType(s *model.Span) string {
	for _, kv := range s.Attributes {
		if kv.Key == "error.type" {
			return kv.Value.AsString()
		}
	}
	return otherValue
}

// promName is the Prometheus name of an OpenTelemetry metric.
func promName(name, unit string) string {
	n := strings.ReplaceAll(name, ".", "_")
	if unit != "" {
		n += "_" + unit
	}
	return n
}

// write writes the GenAI families that have series.
func (m *genAIMetrics) write(w io.Writer) {
	for _, h := range [...]struct {
		name, unit, help string
		f                *family[genAIKey, *histogram]
	}{
		{semconv.GenAIClientTokenUsage, "", "Tokens used by model calls, by token type (gen_ai.client.token.usage).", &m.clientTokens},
		{semconv.GenAIClientOperationDuration, "seconds", "Duration of model calls as the caller saw them (gen_ai.client.operation.duration).", &m.clientDuration},
		{semconv.GenAIClientTimeToFirstChunk, "seconds", "Time from a streamed model call's request to its first chunk (gen_ai.client.operation.time_to_first_chunk).", &m.clientFirstChunk},
		{semconv.GenAIClientTimePerOutputChunk, "seconds", "Time between the chunks of a streamed answer after the first, each call's mean once per chunk (gen_ai.client.operation.time_per_output_chunk).", &m.clientPerChunk},
		{semconv.ZeroGenAIServerTokenUsage, "", "Tokens used by the model calls a traced model server answered, by token type.", &m.serverTokens},
		{semconv.GenAIServerRequestDuration, "seconds", "Duration of the model calls a model server answered, to its last byte (gen_ai.server.request.duration).", &m.serverDuration},
		{semconv.GenAIServerTimeToFirstToken, "seconds", "Time from a model call's request to the first token its server sent (gen_ai.server.time_to_first_token).", &m.serverFirstToken},
		{semconv.GenAIServerTimePerOutputToken, "seconds", "Time per output token after the first a model server sent, each call's mean once per token (gen_ai.server.time_per_output_token).", &m.serverPerToken},
	} {
		if len(h.f.series) > 0 {
			writeHistogramUnit(w, promName(h.name, h.unit), h.unit, h.help, h.f)
		}
	}
	if len(m.cost.series) > 0 {
		name := promName(semconv.ZeroGenAICostMetric, "usd")
		fmt.Fprintf(w, "# TYPE %s counter\n# HELP %s Cost of model calls by the configured price table, in US dollars (zerotrace.gen_ai.cost).\n", name, name)
		for _, s := range m.cost.sorted() {
			fmt.Fprintf(w, "%s_total{%s} %s", name, s.labels, formatFloat(s.value.v))
			if ex := s.value.ex; ex.traceID.IsValid() {
				fmt.Fprintf(w, " # {trace_id=\"%s\"} %s %.3f", ex.traceID, formatFloat(ex.value), float64(ex.at.UnixNano())/1e9)
			}
			fmt.Fprintln(w)
		}
	}
	if n := m.models.overflow + m.servers.overflow + m.errors.overflow; n > 0 {
		fmt.Fprintf(w, "# TYPE zerotrace_gen_ai_label_overflow counter\n# HELP zerotrace_gen_ai_label_overflow GenAI metric label values written %s because their label had too many distinct values.\n", otherValue)
		for _, o := range [...]struct {
			label string
			n     uint64
		}{{"gen_ai_model", m.models.overflow}, {"server_address", m.servers.overflow}, {"error_type", m.errors.overflow}} {
			fmt.Fprintf(w, "zerotrace_gen_ai_label_overflow_total{label=\"%s\"} %d\n", o.label, o.n)
		}
	}
}
