package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ollamaLine holds the fields of an Ollama answer (a whole body or one
// NDJSON line) that the report needs.
type ollamaLine struct {
	Model   string `json:"model"`
	Message *struct {
		Content string `json:"content"`
	} `json:"message"`
	Response        *string     `json:"response"`
	Embeddings      [][]float64 `json:"embeddings"`
	Done            bool        `json:"done"`
	DoneReason      string      `json:"done_reason"`
	PromptEvalCount *int64      `json:"prompt_eval_count"`
	EvalCount       *int64      `json:"eval_count"`
	Error           string      `json:"error"`
}

func (l *ollamaLine) content() string {
	switch {
	case l.Message != nil:
		return l.Message.Content
	case l.Response != nil:
		return *l.Response
	}
	return ""
}

// ollama calls /api/chat, /api/generate or /api/embed with net/http, as
// the many hand-written Ollama clients do: the stream flag is always sent
// (the API streams unless told not to).
func (c *clients) ollama(ctx context.Context, b batch, k *call) {
	k.Client = "net/http"
	kind := strings.TrimPrefix(b.API, "ollama.")
	k.setURL("/api/"+kind, c.base)
	body := map[string]any{"model": b.Model}
	switch kind {
	case "chat":
		body["messages"] = []map[string]string{{"role": "user", "content": b.prompt()}}
	case "generate":
		body["prompt"] = b.prompt()
	case "embed":
		k.Stream, k.MaxTokens = false, 0
		inputs := make([]string, max(b.Inputs, 1))
		for i := range inputs {
			inputs[i] = b.prompt()
		}
		body["input"] = inputs
	}
	if kind != "embed" {
		body["stream"] = b.Stream
		if b.MaxTokens > 0 {
			body["options"] = map[string]any{"num_predict": b.MaxTokens}
		}
	}
	data, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.URL, bytes.NewReader(data))
	if err != nil {
		k.Error = err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.observe(req, httpClient.Do)
	if err != nil {
		k.Error = err.Error()
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 || !k.Stream {
		raw, err := io.ReadAll(resp.Body)
		k.Times.End = time.Now()
		if err != nil {
			k.Error = err.Error()
		}
		var l ollamaLine
		if jerr := json.Unmarshal(raw, &l); jerr != nil {
			if k.Error == "" {
				k.Error = "decoding the answer: " + jerr.Error()
			}
			return
		}
		k.ollamaLine(&l)
		k.Text = l.content()
		if resp.StatusCode >= 400 && k.Error == "" {
			k.Error = fmt.Sprintf("status %d: %s", resp.StatusCode, l.Error)
		}
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var l ollamaLine
		if err := json.Unmarshal(line, &l); err != nil {
			k.chunk("")
			k.Error = "decoding a line: " + err.Error()
			continue
		}
		k.chunk(l.content())
		k.ollamaLine(&l)
	}
	k.Times.End = time.Now()
	if err := sc.Err(); err != nil {
		k.Error = err.Error()
	}
}

func (k *call) ollamaLine(l *ollamaLine) {
	if l.Model != "" {
		k.ResponseModel = l.Model
	}
	if l.Error != "" {
		k.ErrorMessage = l.Error
	}
	if l.Embeddings != nil {
		k.Embeddings = len(l.Embeddings)
	}
	if l.DoneReason != "" {
		k.FinishReasons = []string{l.DoneReason}
	}
	if l.PromptEvalCount != nil || l.EvalCount != nil {
		if k.Usage == nil {
			k.Usage = &usage{}
		}
		if l.PromptEvalCount != nil {
			k.Usage.Input = *l.PromptEvalCount
		}
		if l.EvalCount != nil {
			k.Usage.Output = *l.EvalCount
		}
	}
}
