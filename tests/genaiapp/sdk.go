package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// clients holds one client per SDK; they share http.DefaultClient (so its
// connections) as an application's would.
type clients struct {
	base      string
	openai    openai.Client
	anthropic anthropic.Client
}

func newClients(base string, retries int) *clients {
	base = strings.TrimRight(base, "/")
	if base == "" {
		base = "http://127.0.0.1:11434"
	}
	return &clients{
		base:      base,
		openai:    openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("zt-test-key"), option.WithMaxRetries(retries)),
		anthropic: anthropic.NewClient(aoption.WithBaseURL(base+"/"), aoption.WithAPIKey("zt-test-key"), aoption.WithMaxRetries(retries)),
	}
}

type callFunc func(ctx context.Context, b batch, k *call)

func (c *clients) apis() map[string]callFunc {
	return map[string]callFunc{
		"openai.chat":        c.openAIChat,
		"openai.completions": c.openAICompletions,
		"openai.embeddings":  c.openAIEmbeddings,
		"openai.responses":   c.openAIResponses,
		"anthropic.messages": c.anthropicMessages,
		"ollama.chat":        c.ollama,
		"ollama.generate":    c.ollama,
		"ollama.embed":       c.ollama,
	}
}

// oopts are the per-call options: the middleware that times the head.
func oopts(k *call) []option.RequestOption {
	k.Client = "openai-go"
	return []option.RequestOption{option.WithMiddleware(k.observe)}
}

func (k *call) setURL(path string, base string) { k.URL = base + path }

// openAIError fills the call's error fields from an SDK error.
func (k *call) openAIError(err error) {
	if err == nil {
		return
	}
	k.Error = err.Error()
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		k.ErrorType, k.ErrorMessage = apiErr.Type, apiErr.Message
		if k.Status == 0 {
			k.Status = apiErr.StatusCode
		}
		return
	}
	// An error object inside a stream comes back as text with the
	// object's JSON after the SDK's words.
	if i := strings.IndexByte(k.Error, '{'); i >= 0 {
		var obj struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(k.Error[i:]), &obj) == nil {
			k.ErrorType, k.ErrorMessage = obj.Type, obj.Message
		}
	}
}

func openAIUsage(u openai.CompletionUsage) *usage {
	return &usage{Input: u.PromptTokens, Output: u.CompletionTokens, Cached: u.PromptTokensDetails.CachedTokens,
		CacheWrite: u.PromptTokensDetails.CacheWriteTokens, Reasoning: u.CompletionTokensDetails.ReasoningTokens}
}

func (c *clients) openAIChat(ctx context.Context, b batch, k *call) {
	k.setURL("/v1/chat/completions", c.base)
	p := openai.ChatCompletionNewParams{
		Model:    b.Model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(b.prompt())},
	}
	if b.MaxTokens > 0 {
		p.MaxCompletionTokens = openai.Int(b.MaxTokens)
	}
	if !b.Stream {
		r, err := c.openai.Chat.Completions.New(ctx, p, oopts(k)...)
		k.Times.End = time.Now()
		if err != nil {
			k.openAIError(err)
			return
		}
		k.ResponseID, k.ResponseModel = r.ID, r.Model
		for _, ch := range r.Choices {
			k.FinishReasons = append(k.FinishReasons, ch.FinishReason)
		}
		if len(r.Choices) > 0 {
			k.Text = r.Choices[0].Message.Content
		}
		if r.JSON.Usage.Valid() {
			k.Usage = openAIUsage(r.Usage)
		}
		return
	}
	if b.IncludeUsage {
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	}
	s := c.openai.Chat.Completions.NewStreaming(ctx, p, oopts(k)...)
	defer s.Close()
	for s.Next() {
		ch := s.Current()
		content := ""
		for _, choice := range ch.Choices {
			if choice.Index == 0 {
				content = choice.Delta.Content
			}
			if choice.FinishReason != "" {
				k.FinishReasons = append(k.FinishReasons, choice.FinishReason)
			}
		}
		k.chunk(content)
		k.ResponseID, k.ResponseModel = ch.ID, ch.Model
		if ch.JSON.Usage.Valid() {
			k.Usage = openAIUsage(ch.Usage)
		}
		if b.StopAfter > 0 && k.Chunks >= b.StopAfter {
			// Closing the body before its end makes net/http close the
			// connection.
			s.Close()
			break
		}
	}
	k.Times.End = time.Now()
	k.openAIError(s.Err())
}

func (c *clients) openAICompletions(ctx context.Context, b batch, k *call) {
	k.setURL("/v1/completions", c.base)
	p := openai.CompletionNewParams{
		Model:  openai.CompletionNewParamsModel(b.Model),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(b.prompt())},
	}
	if b.MaxTokens > 0 {
		p.MaxTokens = openai.Int(b.MaxTokens)
	}
	if !b.Stream {
		r, err := c.openai.Completions.New(ctx, p, oopts(k)...)
		k.Times.End = time.Now()
		if err != nil {
			k.openAIError(err)
			return
		}
		k.ResponseID, k.ResponseModel = r.ID, r.Model
		for _, ch := range r.Choices {
			k.FinishReasons = append(k.FinishReasons, string(ch.FinishReason))
		}
		if len(r.Choices) > 0 {
			k.Text = r.Choices[0].Text
		}
		if r.JSON.Usage.Valid() {
			k.Usage = openAIUsage(r.Usage)
		}
		return
	}
	if b.IncludeUsage {
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	}
	s := c.openai.Completions.NewStreaming(ctx, p, oopts(k)...)
	defer s.Close()
	for s.Next() {
		ch := s.Current()
		content := ""
		for _, choice := range ch.Choices {
			if choice.Index == 0 {
				content = choice.Text
			}
			if choice.FinishReason != "" {
				k.FinishReasons = append(k.FinishReasons, string(choice.FinishReason))
			}
		}
		k.chunk(content)
		k.ResponseID, k.ResponseModel = ch.ID, ch.Model
		if ch.JSON.Usage.Valid() {
			k.Usage = openAIUsage(ch.Usage)
		}
	}
	k.Times.End = time.Now()
	k.openAIError(s.Err())
}

func (c *clients) openAIEmbeddings(ctx context.Context, b batch, k *call) {
	k.setURL("/v1/embeddings", c.base)
	k.Stream, k.IncludeUsage, k.MaxTokens = false, false, 0
	inputs := make([]string, max(b.Inputs, 1))
	for i := range inputs {
		inputs[i] = b.prompt()
	}
	r, err := c.openai.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
		Model: b.Model,
	}, oopts(k)...)
	k.Times.End = time.Now()
	if err != nil {
		k.openAIError(err)
		return
	}
	k.ResponseModel = r.Model
	k.Embeddings = len(r.Data)
	if r.JSON.Usage.Valid() {
		k.Usage = &usage{Input: r.Usage.PromptTokens}
	}
}

// responseDone fills the call from the Responses API's final response
// object: the finish reasons are its status and, when incomplete, the
// reason (as tests/modelserver records them).
func (k *call) responseDone(r *responses.Response) {
	k.ResponseID, k.ResponseModel = r.ID, r.Model
	if r.Status != "" {
		k.FinishReasons = []string{string(r.Status)}
		if r.IncompleteDetails.Reason != "" {
			k.FinishReasons = append(k.FinishReasons, string(r.IncompleteDetails.Reason))
		}
	}
	if r.JSON.Usage.Valid() {
		k.Usage = &usage{Input: r.Usage.InputTokens, Output: r.Usage.OutputTokens, Cached: r.Usage.InputTokensDetails.CachedTokens,
			Reasoning: r.Usage.OutputTokensDetails.ReasoningTokens}
	}
}

func (c *clients) openAIResponses(ctx context.Context, b batch, k *call) {
	k.setURL("/v1/responses", c.base)
	p := responses.ResponseNewParams{
		Model: b.Model,
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(b.prompt())},
	}
	if b.MaxTokens > 0 {
		p.MaxOutputTokens = openai.Int(b.MaxTokens)
	}
	if !b.Stream {
		r, err := c.openai.Responses.New(ctx, p, oopts(k)...)
		k.Times.End = time.Now()
		if err != nil {
			k.openAIError(err)
			return
		}
		k.responseDone(r)
		k.Text = r.OutputText()
		return
	}
	s := c.openai.Responses.NewStreaming(ctx, p, oopts(k)...)
	defer s.Close()
	for s.Next() {
		ev := s.Current()
		content := ""
		switch ev.Type {
		case "response.output_text.delta":
			content = ev.Delta
		case "response.created":
			k.ResponseID, k.ResponseModel = ev.Response.ID, ev.Response.Model
		case "response.completed", "response.incomplete", "response.failed":
			k.responseDone(&ev.Response)
		case "error":
			k.ErrorType, k.ErrorMessage = ev.Code, ev.Message
		}
		k.chunk(content)
	}
	k.Times.End = time.Now()
	if err := s.Err(); err != nil {
		k.openAIError(err)
	}
}

// anthropicError fills the call's error fields from an SDK error; the
// error object's type and message come from its raw JSON.
func (k *call) anthropicError(err error) {
	if err == nil {
		return
	}
	k.Error = err.Error()
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		if k.Status == 0 {
			k.Status = apiErr.StatusCode
		}
		k.ErrorType = string(apiErr.Type())
		var body struct {
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal([]byte(apiErr.RawJSON()), &body) == nil {
			if body.Error.Type != "" {
				k.ErrorType = body.Error.Type
			}
			k.ErrorMessage = body.Error.Message
		}
	}
}

func anthropicUsage(input, output, cacheRead, cacheWrite, thinking int64) *usage {
	return &usage{Input: input, Output: output, Cached: cacheRead, CacheWrite: cacheWrite, Reasoning: thinking}
}

func (c *clients) anthropicMessages(ctx context.Context, b batch, k *call) {
	k.setURL("/v1/messages", c.base)
	maxTokens := b.MaxTokens
	if maxTokens <= 0 {
		maxTokens = 64 // required by the API
		k.MaxTokens = maxTokens
	}
	p := anthropic.MessageNewParams{
		Model:     anthropic.Model(b.Model),
		MaxTokens: maxTokens,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(b.prompt()))},
	}
	opts := []aoption.RequestOption{aoption.WithMiddleware(k.observe)}
	k.Client = "anthropic-sdk-go"
	if !b.Stream {
		m, err := c.anthropic.Messages.New(ctx, p, opts...)
		k.Times.End = time.Now()
		if err != nil {
			k.anthropicError(err)
			return
		}
		k.ResponseID, k.ResponseModel = m.ID, string(m.Model)
		if m.StopReason != "" {
			k.FinishReasons = []string{string(m.StopReason)}
		}
		for _, block := range m.Content {
			k.Text += block.Text
		}
		if m.JSON.Usage.Valid() {
			u := m.Usage
			k.Usage = anthropicUsage(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.OutputTokensDetails.ThinkingTokens)
		}
		return
	}
	s := c.anthropic.Messages.NewStreaming(ctx, p, opts...)
	defer s.Close()
	for s.Next() {
		ev := s.Current()
		content := ""
		switch ev.Type {
		case "message_start":
			m := ev.Message
			k.ResponseID, k.ResponseModel = m.ID, string(m.Model)
			if m.JSON.Usage.Valid() {
				u := m.Usage
				k.Usage = anthropicUsage(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.OutputTokensDetails.ThinkingTokens)
			}
		case "content_block_delta":
			content = ev.Delta.Text
		case "message_delta":
			if ev.Delta.StopReason != "" {
				k.FinishReasons = []string{string(ev.Delta.StopReason)}
			}
			if ev.JSON.Usage.Valid() {
				// The delta's counts are cumulative: the last one wins.
				u := ev.Usage
				k.Usage = anthropicUsage(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.OutputTokensDetails.ThinkingTokens)
			}
		}
		k.chunk(content)
	}
	k.Times.End = time.Now()
	k.anthropicError(s.Err())
}

// httpClient is what the SDKs use by default; the Ollama calls use it too.
var httpClient = http.DefaultClient
