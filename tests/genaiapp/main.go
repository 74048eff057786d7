// Command genaiapp is the Go client of zerotrace's GenAI tests: it calls a
// model API (in the tests, tests/modelserver on loopback) through the
// official SDKs — github.com/openai/openai-go/v3 for the OpenAI shapes,
// github.com/anthropics/anthropic-sdk-go for Anthropic messages — and plain
// net/http for Ollama's API, and reports each call as one JSON line: what it
// sent, what the SDK gave back, and when the head, the first chunk, the
// first token and the end arrived, for a test to compare with the spans.
//
// It is a module of its own so that the SDKs stay out of zerotrace's go.mod.
// TLS needs no code or flag: the SDKs use Go's default HTTP client, which
// trusts SSL_CERT_FILE and speaks HTTP/2 when the server offers it
// (GODEBUG=http2client=0 for HTTP/1.1 over TLS).
//
//	genaiapp call -base URL [-api openai.chat] [-n 1] [-stream] [-include-usage]
//	              [-model gpt-test] [-prompt TEXT] [-prompt-bytes N] [-max-tokens N]
//	              [-inputs N] [-parallel 1] [-retries 0]
//	    makes n calls (one after the other, or -parallel at once) and prints
//	    one JSON line per call.
//	genaiapp serve -base URL [-addr 127.0.0.1:0] [-retries 0]
//	    prints "listening on HOST:PORT" and serves
//	      /call?api=…&n=…&stream=1&include_usage=1&model=…&prompt=…&prompt_bytes=…&max_tokens=…&inputs=…&parallel=…
//	        the same calls, made by the request's goroutine (so that each is a
//	        child of the request's span), answered as JSON lines;
//	      /gateway?model=…&stream=1&phase_ms=20
//	        three named phases (main.parseInput, main.retrieve,
//	        main.buildPrompt), then an openai-go chat call; answers one JSON
//	        object with each phase's start and end and the call.
//
// APIs: openai.chat, openai.completions, openai.embeddings, openai.responses,
// anthropic.messages, ollama.chat, ollama.generate, ollama.embed (the names
// of tests/internal/modelspec).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// batch is what to call, how many times.
type batch struct {
	API          string
	N            int
	Stream       bool
	IncludeUsage bool
	Model        string
	Prompt       string
	PromptBytes  int
	MaxTokens    int64
	Inputs       int
	Parallel     int
	StopAfter    int
}

func (b *batch) flags(fs *flag.FlagSet) {
	fs.StringVar(&b.API, "api", "openai.chat", "API shape to call")
	fs.IntVar(&b.N, "n", 1, "number of calls, one after the other")
	fs.BoolVar(&b.Stream, "stream", false, "stream the answers")
	fs.BoolVar(&b.IncludeUsage, "include-usage", false, "OpenAI streams: ask for the usage chunk (stream_options.include_usage)")
	fs.StringVar(&b.Model, "model", "gpt-test", "model name (tests/modelserver reads options after '@')")
	fs.StringVar(&b.Prompt, "prompt", "Say hello to zerotrace.", "prompt text")
	fs.IntVar(&b.PromptBytes, "prompt-bytes", 0, "pad the prompt with 'x' to this many bytes (0: as given)")
	fs.Int64Var(&b.MaxTokens, "max-tokens", 64, "max output tokens (0: not sent, except Anthropic, which requires it)")
	fs.IntVar(&b.Inputs, "inputs", 1, "embeddings: number of inputs")
	fs.IntVar(&b.Parallel, "parallel", 1, "calls in flight at once (load tests; the lines then come in completion order)")
	fs.IntVar(&b.StopAfter, "stop-after", 0, "openai.chat streams: close the stream after this many chunks, as a user stopping the answer would (0: read it whole)")
}

// fromQuery reads a batch from /call's query, with the flags' defaults.
func fromQuery(q url.Values) (batch, error) {
	var b batch
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	b.flags(fs)
	for k, vs := range q {
		name := strings.ReplaceAll(k, "_", "-")
		if fs.Lookup(name) == nil {
			return b, fmt.Errorf("unknown parameter %q", k)
		}
		for _, v := range vs {
			if err := fs.Set(name, v); err != nil {
				return b, fmt.Errorf("parameter %s: %w", k, err)
			}
		}
	}
	return b, nil
}

func (b batch) prompt() string {
	if len(b.Prompt) >= b.PromptBytes {
		return b.Prompt
	}
	return b.Prompt + " " + strings.Repeat("x", b.PromptBytes-len(b.Prompt)-1)
}

// run makes the batch's calls and hands each to emit.
func (c *clients) run(ctx context.Context, b batch, emit func(*call)) error {
	fn, ok := c.apis()[b.API]
	if !ok {
		return fmt.Errorf("unknown API %q", b.API)
	}
	if b.N < 0 || b.N > 1000000 {
		return fmt.Errorf("n %d out of range", b.N)
	}
	if b.Parallel > 10000 {
		return fmt.Errorf("parallel %d out of range", b.Parallel)
	}
	one := func(i int) {
		k := &call{Driver: "go", API: b.API, Index: i, PID: os.Getpid(), Model: b.Model, Stream: b.Stream,
			MaxTokens: b.MaxTokens, PromptBytes: len(b.prompt())}
		if strings.HasPrefix(b.API, "openai.") && b.Stream {
			k.IncludeUsage = b.IncludeUsage
		}
		k.Times.Start = time.Now()
		fn(ctx, b, k)
		if k.Times.End.IsZero() {
			k.Times.End = time.Now()
		}
		emit(k)
	}
	if b.Parallel <= 1 {
		for i := range b.N {
			one(i)
		}
		return nil
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(b.Parallel, b.N) {
		wg.Go(func() {
			for i := range next {
				one(i)
			}
		})
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	return nil
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("genaiapp: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: genaiapp call|serve -base URL [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	base := fs.String("base", "", "the model server's base URL, e.g. https://127.0.0.1:8443 (required)")
	retries := fs.Int("retries", 0, "SDK retries on 429/5xx (0: each call is one request)")
	switch os.Args[1] {
	case "call":
		var b batch
		b.flags(fs)
		fs.Parse(os.Args[2:])
		c := newClients(*base, *retries)
		if err := c.run(context.Background(), b, stdoutReporter.report); err != nil {
			log.Fatal(err)
		}
	case "serve":
		addr := fs.String("addr", "127.0.0.1:0", "listen address")
		fs.Parse(os.Args[2:])
		serve(*addr, newClients(*base, *retries))
	default:
		log.Fatalf("unknown command %q (want call or serve)", os.Args[1])
	}
}

func serve(addr string, c *clients) {
	mux := http.NewServeMux()
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		b, err := fromQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		rep := &reporter{w: w}
		if err := c.run(r.Context(), b, rep.report); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/gateway", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		g, err := c.gateway(r.Context(), q.Get("model"), q.Get("stream") == "1" || q.Get("stream") == "true", q.Get("phase_ms"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(g)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("listening on %s: %v", addr, err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Fatalf("serving: %v", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Printf("shutting down: %v", err)
	}
}

// phase is one named step of /gateway, as the app timed it.
type phase struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// gatewayResult is /gateway's answer.
type gatewayResult struct {
	Start  time.Time `json:"start"`
	Phases []phase   `json:"phases"`
	Call   *call     `json:"call"`
	End    time.Time `json:"end"`
}

// gateway runs the three phases an LLM service typically has before its
// model call, each a function of its own that is never inlined, so that
// zerotrace can be told to make each a span.
func (c *clients) gateway(ctx context.Context, model string, stream bool, phaseMS string) (*gatewayResult, error) {
	if model == "" {
		model = "gpt-test"
	}
	d := 20 * time.Millisecond
	if phaseMS != "" {
		ms, err := strconv.ParseFloat(phaseMS, 64)
		if err != nil || ms < 0 || ms > 60000 {
			return nil, fmt.Errorf("phase_ms: want milliseconds")
		}
		d = time.Duration(ms * float64(time.Millisecond))
	}
	g := &gatewayResult{Start: time.Now()}
	timed := func(name string, f func() string) string {
		p := phase{Name: "main." + name, Start: time.Now()}
		out := f()
		p.End = time.Now()
		g.Phases = append(g.Phases, p)
		return out
	}
	input := timed("parseInput", func() string { return parseInput(d, "What is zerotrace?") })
	docs := timed("retrieve", func() string { return retrieve(d, input) })
	prompt := timed("buildPrompt", func() string { return buildPrompt(d, input, docs) })
	b := batch{API: "openai.chat", N: 1, Stream: stream, IncludeUsage: stream, Model: model, Prompt: prompt, MaxTokens: 64}
	err := c.run(ctx, b, func(k *call) { g.Call = k })
	g.End = time.Now()
	return g, err
}

//go:noinline
func parseInput(d time.Duration, q string) string {
	time.Sleep(d)
	return strings.TrimSpace(q)
}

//go:noinline
func retrieve(d time.Duration, q string) string {
	time.Sleep(d)
	return "zerotrace traces programs with eBPF. (" + strconv.Itoa(len(q)) + ")"
}

//go:noinline
func buildPrompt(d time.Duration, q, docs string) string {
	time.Sleep(d)
	return "Context: " + docs + "\nQuestion: " + q
}
