package semconv

import (
	"encoding/json"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// The GenAI names, all of them in this one file: the conventions' GenAI
// part is in Development and moving (it left the main repository after
// v1.41 for open-telemetry/semantic-conventions-genai, and its token
// metrics are being restructured), so a rename is one edit here. These are
// v1.41's (go.opentelemetry.io/otel/semconv/v1.41.0), plus zerotrace's own
// under zerotrace.gen_ai.
const (
	GenAIOperationName         = "gen_ai.operation.name"
	GenAIProviderName          = "gen_ai.provider.name"
	GenAIRequestModel          = "gen_ai.request.model"
	GenAIRequestMaxTokens      = "gen_ai.request.max_tokens"
	GenAIRequestTemperature    = "gen_ai.request.temperature"
	GenAIRequestTopP           = "gen_ai.request.top_p"
	GenAIRequestTopK           = "gen_ai.request.top_k"
	GenAIRequestFrequency      = "gen_ai.request.frequency_penalty"
	GenAIRequestPresence       = "gen_ai.request.presence_penalty"
	GenAIRequestSeed           = "gen_ai.request.seed"
	GenAIRequestChoiceCount    = "gen_ai.request.choice.count"
	GenAIRequestStopSequences  = "gen_ai.request.stop_sequences"
	GenAIRequestStream         = "gen_ai.request.stream"
	GenAIRequestEncodingFormat = "gen_ai.request.encoding_formats"
	GenAIOutputType            = "gen_ai.output.type"
	GenAIEmbeddingsDimensions  = "gen_ai.embeddings.dimension.count"
	GenAIResponseID            = "gen_ai.response.id"
	GenAIResponseModel         = "gen_ai.response.model"
	GenAIResponseFinishReasons = "gen_ai.response.finish_reasons"
	GenAIResponseFirstChunk    = "gen_ai.response.time_to_first_chunk"
	GenAIUsageInputTokens      = "gen_ai.usage.input_tokens"
	GenAIUsageOutputTokens     = "gen_ai.usage.output_tokens"
	GenAIUsageCacheRead        = "gen_ai.usage.cache_read.input_tokens"
	GenAIUsageCacheCreation    = "gen_ai.usage.cache_creation.input_tokens"
	GenAIUsageReasoning        = "gen_ai.usage.reasoning.output_tokens"
	GenAISystemInstructions    = "gen_ai.system_instructions"
	GenAIInputMessages         = "gen_ai.input.messages"
	GenAIOutputMessages        = "gen_ai.output.messages"

	OpenAIAPIType                   = "openai.api.type"
	OpenAIRequestServiceTier        = "openai.request.service_tier"
	OpenAIResponseServiceTier       = "openai.response.service_tier"
	OpenAIResponseSystemFingerprint = "openai.response.system_fingerprint"

	// zerotrace's own: the first content delta (the conventions' first
	// chunk is often only the role), the stream's chunks, output tokens a
	// second after the first token, whether the output count was
	// estimated from the chunks, what the capture did not see of the
	// bodies, and the price table's cost.
	ZeroGenAIFirstToken      = "zerotrace.gen_ai.time_to_first_token"
	ZeroGenAIChunks          = "zerotrace.gen_ai.chunks"
	ZeroGenAITokensPerSecond = "zerotrace.gen_ai.output_tokens_per_second"
	ZeroGenAIEstimated       = "zerotrace.gen_ai.usage.estimated"
	ZeroGenAITruncated       = "zerotrace.gen_ai.body.truncated"
	ZeroGenAIEncoded         = "zerotrace.gen_ai.body.encoded"
	ZeroGenAICost            = "zerotrace.gen_ai.cost_usd"
	ZeroGenAIContentCut      = "zerotrace.gen_ai.content.truncated"
)

// The GenAI metrics (gen-ai-metrics.md, v1.41), their token-type
// attribute and values, and zerotrace's own: the token usage a model
// server's side reports (the conventions define none) and the cost.
const (
	GenAIClientTokenUsage         = "gen_ai.client.token.usage"
	GenAIClientOperationDuration  = "gen_ai.client.operation.duration"
	GenAIClientTimeToFirstChunk   = "gen_ai.client.operation.time_to_first_chunk"
	GenAIClientTimePerOutputChunk = "gen_ai.client.operation.time_per_output_chunk"
	GenAIServerRequestDuration    = "gen_ai.server.request.duration"
	GenAIServerTimeToFirstToken   = "gen_ai.server.time_to_first_token"
	GenAIServerTimePerOutputToken = "gen_ai.server.time_per_output_token"
	ZeroGenAIServerTokenUsage     = "zerotrace.gen_ai.server.token.usage"
	ZeroGenAICostMetric           = "zerotrace.gen_ai.cost"

	GenAITokenType       = "gen_ai.token.type"
	GenAITokenTypeInput  = "input"
	GenAITokenTypeOutput = "output"
)

// The bucket boundaries the conventions advise: for token counts, for
// durations of whole calls, for the time to the first token (or chunk),
// and for the time per output token (or chunk).
var (
	GenAITokenBuckets      = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	GenAIDurationBuckets   = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	GenAIFirstTokenBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	GenAIPerTokenBuckets   = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5}
)

// genAIAttrs is room for the attributes a GenAI exchange adds to its HTTP
// ones.
const genAIAttrs = 36

// appendGenAI adds the GenAI attributes of a call to a model to the HTTP
// ones already in attrs, names the span after the call and settles its
// status by the API's error (error.type is the API's, replacing HTTP's).
func appendGenAI(attrs []attribute.KeyValue, s *model.Span, r texts) []attribute.KeyValue {
	g := s.GenAI
	g.Operation = r.String(g.Operation)
	g.Provider = r.String(g.Provider)
	g.RequestModel = r.String(g.RequestModel)
	g.ResponseModel = r.String(g.ResponseModel)
	g.ResponseID = r.String(g.ResponseID)
	g.ErrorType = r.String(g.ErrorType)
	g.ErrorMessage = r.String(g.ErrorMessage)
	g.SystemFingerprint = r.String(g.SystemFingerprint)

	if g.Operation != "" {
		attrs = append(attrs, attribute.String(GenAIOperationName, g.Operation))
	}
	if g.Provider != "" {
		attrs = append(attrs, attribute.String(GenAIProviderName, g.Provider))
	}
	if g.RequestModel != "" {
		attrs = append(attrs, attribute.String(GenAIRequestModel, g.RequestModel))
	}
	if g.MaxTokens >= 0 {
		attrs = append(attrs, attribute.Int64(GenAIRequestMaxTokens, g.MaxTokens))
	}
	for _, p := range [...]struct {
		bit model.GenAIParams
		key string
		v   float64
	}{
		{model.GenAITemperature, GenAIRequestTemperature, g.Temperature},
		{model.GenAITopP, GenAIRequestTopP, g.TopP},
		{model.GenAITopK, GenAIRequestTopK, g.TopK},
		{model.GenAIFrequencyPenalty, GenAIRequestFrequency, g.FrequencyPenalty},
		{model.GenAIPresencePenalty, GenAIRequestPresence, g.PresencePenalty},
	} {
		if g.Params&p.bit != 0 {
			attrs = append(attrs, attribute.Float64(p.key, p.v))
		}
	}
	if g.Seed != -1 {
		attrs = append(attrs, attribute.Int64(GenAIRequestSeed, g.Seed))
	}
	if g.ChoiceCount >= 0 && g.ChoiceCount != 1 {
		// Only when not 1, as the conventions ask.
		attrs = append(attrs, attribute.Int64(GenAIRequestChoiceCount, g.ChoiceCount))
	}
	if g.NStop > 0 {
		stop := make([]string, g.NStop)
		for i := range stop {
			stop[i] = r.String(g.Stop[i])
		}
		attrs = append(attrs, attribute.StringSlice(GenAIRequestStopSequences, stop))
	}
	if g.Stream {
		// Conditionally required: set only when the call streamed.
		attrs = append(attrs, attribute.Bool(GenAIRequestStream, true))
	}
	if g.OutputType != "" {
		attrs = append(attrs, attribute.String(GenAIOutputType, g.OutputType))
	}
	if g.EncodingFormat != "" {
		attrs = append(attrs, attribute.StringSlice(GenAIRequestEncodingFormat, []string{r.String(g.EncodingFormat)}))
	}
	if g.Dimensions >= 0 {
		attrs = append(attrs, attribute.Int64(GenAIEmbeddingsDimensions, g.Dimensions))
	}

	if g.ResponseID != "" {
		attrs = append(attrs, attribute.String(GenAIResponseID, g.ResponseID))
	}
	if g.ResponseModel != "" {
		attrs = append(attrs, attribute.String(GenAIResponseModel, g.ResponseModel))
	}
	if g.NFinish > 0 {
		finish := make([]string, g.NFinish)
		for i := range finish {
			finish[i] = r.String(g.FinishReasons[i])
		}
		attrs = append(attrs, attribute.StringSlice(GenAIResponseFinishReasons, finish))
	}
	for _, u := range [...]struct {
		key string
		n   int64
	}{
		{GenAIUsageInputTokens, g.Usage.Input},
		{GenAIUsageOutputTokens, g.Usage.Output},
		{GenAIUsageCacheRead, g.Usage.CacheRead},
		{GenAIUsageCacheCreation, g.Usage.CacheCreation},
		{GenAIUsageReasoning, g.Usage.Reasoning},
	} {
		if u.n >= 0 {
			attrs = append(attrs, attribute.Int64(u.key, u.n))
		}
	}
	if g.Usage.Estimated {
		attrs = append(attrs, attribute.Bool(ZeroGenAIEstimated, true))
	}

	if openAIShape(g.API) {
		switch g.API {
		case model.GenAIChatCompletions:
			attrs = append(attrs, attribute.String(OpenAIAPIType, "chat_completions"))
		case model.GenAIResponses:
			attrs = append(attrs, attribute.String(OpenAIAPIType, "responses"))
		}
		if g.RequestServiceTier != "" {
			attrs = append(attrs, attribute.String(OpenAIRequestServiceTier, r.String(g.RequestServiceTier)))
		}
		if g.ServiceTier != "" {
			attrs = append(attrs, attribute.String(OpenAIResponseServiceTier, r.String(g.ServiceTier)))
		}
		if g.SystemFingerprint != "" {
			attrs = append(attrs, attribute.String(OpenAIResponseSystemFingerprint, g.SystemFingerprint))
		}
	}

	// Stream timing, in seconds from the span's start: when the request
	// was made (client) or read (server).
	if !g.FirstChunk.IsZero() && !g.FirstChunk.Before(s.Start) {
		attrs = append(attrs, attribute.Float64(GenAIResponseFirstChunk, g.FirstChunk.Sub(s.Start).Seconds()))
	}
	if !g.FirstToken.IsZero() && !g.FirstToken.Before(s.Start) {
		attrs = append(attrs, attribute.Float64(ZeroGenAIFirstToken, g.FirstToken.Sub(s.Start).Seconds()))
	}
	if g.Chunks > 0 {
		attrs = append(attrs, attribute.Int(ZeroGenAIChunks, int(g.Chunks)))
	}
	if tps, ok := TokensPerSecond(g, s.End); ok {
		attrs = append(attrs, attribute.Float64(ZeroGenAITokensPerSecond, tps))
	}

	switch cut := g.Cut & (model.GenAICutRequest | model.GenAICutResponse); cut {
	case model.GenAICutRequest:
		attrs = append(attrs, attribute.String(ZeroGenAITruncated, "request"))
	case model.GenAICutResponse:
		attrs = append(attrs, attribute.String(ZeroGenAITruncated, "response"))
	case model.GenAICutRequest | model.GenAICutResponse:
		attrs = append(attrs, attribute.String(ZeroGenAITruncated, "request_and_response"))
	}
	if g.Cut&model.GenAIEncoded != 0 {
		attrs = append(attrs, attribute.Bool(ZeroGenAIEncoded, true))
	}
	if g.Priced {
		attrs = append(attrs, attribute.Float64(ZeroGenAICost, g.CostUSD))
	}
	attrs = appendGenAIContent(attrs, g, r)

	switch {
	case g.Operation != "" && g.RequestModel != "":
		s.Name = r.join(g.Operation, g.RequestModel)
	case g.Operation != "":
		s.Name = g.Operation
	}
	return genAIStatus(attrs, s)
}

// genAIStatus settles the status of a model call by the API's error
// object: a client span fails on any (a 4xx included); a server span only
// on what the HTTP rules call a failure (5xx), or on a stream that failed
// after a successful head.
func genAIStatus(attrs []attribute.KeyValue, s *model.Span) []attribute.KeyValue {
	g := s.GenAI
	if g.ErrorType == "" || s.Failure.Failed {
		// No API error, or the round trip itself failed (HTTP's
		// error.type says how).
		return attrs
	}
	status := 0
	if s.HTTP != nil {
		status = s.HTTP.Status
	}
	if s.Kind == trace.SpanKindServer && status >= 400 && status < 500 {
		return attrs
	}
	msg := g.ErrorMessage
	if msg == "" {
		msg = g.ErrorType
	}
	s.Status, s.StatusMsg = codes.Error, msg
	for i := range attrs {
		if attrs[i].Key == "error.type" {
			attrs[i] = attribute.String("error.type", g.ErrorType)
			return attrs
		}
	}
	return append(attrs, attribute.String("error.type", g.ErrorType))
}

// openAIShape says whether an API is one of OpenAI's shapes (which have
// the openai.* attributes).
func openAIShape(a model.GenAIAPI) bool {
	switch a {
	case model.GenAIChatCompletions, model.GenAICompletions, model.GenAIEmbeddings, model.GenAIResponses:
		return true
	}
	return false
}

// TokensPerSecond is a streamed call's output tokens a second after its
// first token: the output tokens after the first over the time from the
// first token to the end (the last chunk, else end). False when there is
// no such rate (not streamed, one token, no time).
func TokensPerSecond(g *model.GenAI, end time.Time) (float64, bool) {
	first := g.TokenStart()
	if !g.LastChunk.IsZero() {
		end = g.LastChunk
	}
	if first.IsZero() || g.Usage.Output < 2 || !end.After(first) {
		return 0, false
	}
	return float64(g.Usage.Output-1) / end.Sub(first).Seconds(), true
}

// The content attributes are JSON documents in the shape the conventions
// give them (gen-ai-input-messages.json, gen-ai-output-messages.json,
// gen-ai-system-instructions.json), as strings, every text redacted.
type (
	jsonPart struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	}
	jsonMessage struct {
		Role         string     `json:"role"`
		Parts        []jsonPart `json:"parts"`
		FinishReason string     `json:"finish_reason,omitempty"`
	}
)

func appendGenAIContent(attrs []attribute.KeyValue, g *model.GenAI, r texts) []attribute.KeyValue {
	if g.SystemInstructions != "" {
		g.SystemInstructions = r.once(g.SystemInstructions)
		attrs = append(attrs, attribute.String(GenAISystemInstructions,
			contentJSON([]jsonPart{{Type: "text", Content: g.SystemInstructions}})))
	}
	for i, msgs := range [2][]model.GenAIMessage{g.Input, g.Output} {
		if len(msgs) == 0 {
			continue
		}
		out := make([]jsonMessage, len(msgs))
		for j := range msgs {
			m := &msgs[j]
			m.Role, m.Text = r.String(m.Role), r.once(m.Text)
			out[j] = jsonMessage{Role: m.Role, Parts: []jsonPart{{Type: "text", Content: m.Text}}, FinishReason: m.FinishReason}
		}
		key := GenAIInputMessages
		if i == 1 {
			key = GenAIOutputMessages
		}
		attrs = append(attrs, attribute.String(key, contentJSON(out)))
	}
	if g.ContentCut {
		attrs = append(attrs, attribute.Bool(ZeroGenAIContentCut, true))
	}
	return attrs
}

func contentJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
