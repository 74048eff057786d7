package servicemap

import (
	"slices"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// KindModel is a model endpoint no traced process answers (an API such as
// OpenAI's, a model server on another host): what GenAI client spans
// call. A traced model server stays a service node; both carry ModelStats.
const KindModel = "model"

// ModelStats summarise the model calls a node answered over the window:
// as its callers saw them for a model endpoint, as the server measured
// them for a traced model server.
type ModelStats struct {
	// Providers and Models (the response's, else the request's) seen,
	// at most maxModelNames of each.
	Providers []string `json:"providers"`
	Models    []string `json:"models"`
	Requests  int64    `json:"requests"`
	Errors    int64    `json:"errors"`
	// Tokens used in the window.
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	// OutputTokensPerSecond is the median of the streamed calls' output
	// rates after their first token; 0 when none was measured.
	OutputTokensPerSecond float64 `json:"output_tokens_per_second"`
	// Time to the first token of streamed calls, percentiles.
	TTFTP50Ms float64 `json:"ttft_p50_ms"`
	TTFTP95Ms float64 `json:"ttft_p95_ms"`
	// CostUSD by the configured price table, of the priced calls.
	CostUSD float64 `json:"cost_usd,omitempty"`
}

// maxModelNames bounds the providers and models a node lists: they come
// from request bodies.
const maxModelNames = 8

// maxModelSamples bounds the calls a node keeps for its window.
const maxModelSamples = 1024

// modelSample is what a node keeps of one model call.
type modelSample struct {
	at      time.Time
	ttft    time.Duration // 0: unknown
	rate    float64       // output tokens a second; 0: unknown
	in, out int64         // -1: unknown
	cost    float64
	failed  bool
}

// modelNode is the model calls one node answered.
type modelNode struct {
	providers, models []string
	samples           []modelSample // a ring from next on once full
	next              int
}

func (n *modelNode) add(c modelSample, provider, model string) {
	n.providers = addName(n.providers, provider)
	n.models = addName(n.models, model)
	if len(n.samples) < maxModelSamples {
		n.samples = append(n.samples, c)
		return
	}
	n.samples[n.next] = c
	n.next = (n.next + 1) % maxModelSamples
}

// addName adds name to names unless there, empty, or names is full. The
// name is copied: spans' strings may be reused by their producer.
func addName(names []string, name string) []string {
	if name == "" || len(names) >= maxModelNames || slices.Contains(names, name) {
		return names
	}
	return append(names, string([]byte(name)))
}

// genAICall is what a span with a GenAI exchange gives its node.
type genAICall struct {
	sample          modelSample
	provider, model string
}

func genAICallOf(s *model.Span) genAICall {
	g := s.GenAI
	c := genAICall{provider: g.Provider, model: g.ResponseModel}
	if c.model == "" {
		c.model = g.RequestModel
	}
	c.sample = modelSample{at: s.End, in: g.Usage.Input, out: g.Usage.Output, failed: s.Status == codes.Error}
	if t := g.TokenStart(); !t.IsZero() && !t.Before(s.Start) {
		c.sample.ttft = t.Sub(s.Start)
	}
	if r, ok := semconv.TokensPerSecond(g, s.End); ok {
		c.sample.rate = r
	}
	if g.Priced {
		c.sample.cost = g.CostUSD
	}
	return c
}

// addModelCall records a model call that node answered.
func (g *Graph) addModelCall(node string, c genAICall) {
	n := g.models[node]
	if n == nil {
		if len(g.models) >= maxKnown {
			return
		}
		n = &modelNode{}
		g.models[node] = n
	}
	n.add(c.sample, c.provider, c.model)
}

// modelStats summarises a node's model calls over the window ending now.
func (n *modelNode) stats(now time.Time, window time.Duration) *ModelStats {
	st := &ModelStats{Providers: slices.Clone(n.providers), Models: slices.Clone(n.models)}
	slices.Sort(st.Providers)
	slices.Sort(st.Models)
	var ttft []time.Duration
	var rates []float64
	for _, c := range n.samples {
		if now.Sub(c.at) > window {
			continue
		}
		st.Requests++
		if c.failed {
			st.Errors++
		}
		st.InputTokens += max(c.in, 0)
		st.OutputTokens += max(c.out, 0)
		st.CostUSD += c.cost
		if c.ttft > 0 {
			ttft = append(ttft, c.ttft)
		}
		if c.rate > 0 {
			rates = append(rates, c.rate)
		}
	}
	st.TTFTP50Ms, st.TTFTP95Ms, _ = percentiles(ttft)
	if len(rates) > 0 {
		slices.Sort(rates)
		st.OutputTokensPerSecond = rates[(len(rates)-1)/2]
	}
	return st
}

// isGenAIClient says whether s is a call to a model API.
func isGenAIClient(s *model.Span) bool { return s.Kind == trace.SpanKindClient && s.GenAI != nil }
