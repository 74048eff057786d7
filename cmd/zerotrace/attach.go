package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerotrace/zerotrace/cmd/internal/agent"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/export"
	"github.com/zerotrace/zerotrace/probes/inject"
)

// defaultListen is where the agent serves its map and metrics: loopback
// only, since neither is protected.
const defaultListen = "127.0.0.1:9464"

type attachOptions struct {
	pids          []int
	exes          []string
	ports         []int
	output        string
	otlpEndpoint  string
	serviceName   string
	logLevel      string
	statsInterval time.Duration
	queueLen      int
	cpuProfile    string
	configPath    string
	inject        string
	listen        string
}

func newAttachCommand() *cobra.Command {
	o := &attachOptions{}
	cmd := &cobra.Command{
		Use:   "attach (--pid PID | --exe GLOB | --port N)...",
		Short: "Trace running processes until interrupted",
		Long: "Attach to running processes and export a span for every request they handle and\n" +
			"every call they make, until SIGINT or SIGTERM; then detach and exit. Go programs are\n" +
			"traced with uprobes, programs in any other language from their socket system calls.\n\n" +
			"Spans go to an OTLP/HTTP endpoint when --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT\n" +
			"(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and to stdout as text or JSON lines.",
		Example: "  zerotrace attach --pid 4242\n" +
			"  zerotrace attach --pid 4242 --output json > spans.jsonl\n" +
			"  zerotrace attach --pid 4242 --otlp-endpoint http://localhost:4318",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAttach(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.pids, "pid", nil, "process to trace (repeatable)")
	f.StringArrayVar(&o.exes, "exe", nil, "trace processes whose executable path or name matches this glob, now and as they start (repeatable)")
	f.IntSliceVar(&o.ports, "port", nil, "trace processes listening on this TCP port, now and as they start (repeatable)")
	f.StringVarP(&o.output, "output", "o", "", "stdout format: text, json or none (default text, or none when an OTLP endpoint is set)")
	f.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "OTLP/HTTP endpoint, e.g. http://localhost:4318 (default from OTEL_EXPORTER_OTLP_*)")
	f.StringVar(&o.serviceName, "service-name", "", "service.name of traced processes that no services: rule of the config and not their own OTEL_SERVICE_NAME names (default: the agent's OTEL_SERVICE_NAME, else the executable's name)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	f.DurationVar(&o.statsInterval, "stats-interval", 30*time.Second, "how often to report lost events on stderr (0 disables)")
	f.IntVar(&o.queueLen, "queue", 16384, "spans queued for each exporter before dropping")
	f.StringVar(&o.configPath, "config", "", "YAML configuration file (redaction settings, spans to leave out; see README)")
	f.StringVar(&o.listen, "listen", defaultListen, "local HTTP endpoint for the service map page, /api/map and /metrics (\"off\" disables)")
	f.StringVar(&o.inject, "inject", string(inject.Auto), "add a traceparent header to outgoing HTTP/1.x requests: auto, sk-msg, write-user or off")
	// For developers measuring the agent's own CPU cost.
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the agent to this file")
	_ = f.MarkHidden("cpuprofile")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json", "none"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("pid", completePIDs)
	_ = cmd.RegisterFlagCompletionFunc("inject", cobra.FixedCompletions([]string{"auto", "sk-msg", "write-user", "off"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// completePIDs offers the PIDs of running processes with their names.
func completePIDs(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		name := e.Name()
		if name == "" || name[0] < '1' || name[0] > '9' {
			continue
		}
		comm, err := os.ReadFile("/proc/" + name + "/comm")
		if err != nil {
			continue
		}
		out = append(out, name+"\t"+strings.TrimSpace(string(comm)))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// fail prints one line per error and returns the exit error for main.
func fail(stderr io.Writer, errs ...error) error {
	for _, err := range errs {
		fmt.Fprintln(stderr, "zerotrace:", err)
	}
	return &exitError{code: 1}
}

func runAttach(ctx context.Context, o *attachOptions, stdout, stderr io.Writer) error {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fail(stderr, err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(stderr, err)
		}
		defer pprof.StopCPUProfile()
	}
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return fail(stderr, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	otlpEndpoint := o.otlpEndpoint
	otlpFromEnv := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	output := o.output
	if output == "" {
		output = "text"
		if otlpEndpoint != "" || otlpFromEnv {
			output = "none"
		}
	}
	if output != "text" && output != "json" && output != "none" {
		return fail(stderr, fmt.Errorf("invalid --output %q: want text, json or none", output))
	}
	if otlpEndpoint != "" {
		if _, err := export.OTLPEndpointURL(otlpEndpoint); err != nil {
			return fail(stderr, err)
		}
	}
	sel := agent.Selector{Exes: o.exes, Ports: o.ports}
	if len(o.pids) == 0 && sel.Empty() {
		return fail(stderr, errors.New("nothing to trace: give --pid, --exe or --port"))
	}
	if err := sel.Check(); err != nil {
		return fail(stderr, err)
	}
	injectMode, err := inject.ParseMode(o.inject)
	if err != nil {
		return fail(stderr, err)
	}
	serviceName := o.serviceName
	if serviceName == "" {
		serviceName = os.Getenv("OTEL_SERVICE_NAME")
	}
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return fail(stderr, err)
	}
	red, err := newRedactor(cfg, o.configPath, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	gen, err := cfg.GenAI.genAI()
	if err != nil {
		return fail(stderr, fmt.Errorf("config %s: gen_ai: %w", o.configPath, err))
	}
	if gen.Content {
		n := gen.MaxContent
		if n == 0 {
			n = genai.DefaultMaxContent
		}
		fmt.Fprintf(stderr, "zerotrace: model calls' prompts and answers are exported, redacted and cut at %d bytes each (gen_ai.capture_content in %s)\n",
			n, o.configPath)
	}

	services, err := cfg.services()
	if err != nil {
		return fail(stderr, fmt.Errorf("config %s: services: %w", o.configPath, err))
	}

	a, err := agent.New(agent.Config{
		Log: log, Out: stderr, ServiceName: serviceName, Inject: injectMode,
		Redactor: red, QueueLen: o.queueLen, Listen: o.listen,
		DropBackground: cfg.Spans.DropBackground, GenAI: gen,
		Phases: cfg.Phases, Services: services,
	})
	if err != nil {
		return fail(stderr, err)
	}
	selected := slices.Clone(o.pids)
	seen := map[int]bool{}
	for _, pid := range selected {
		seen[pid] = true
	}
	if !sel.Empty() {
		for _, pid := range agent.Processes(os.Getpid()) {
			if _, ok := sel.Matches(pid); ok && !seen[pid] {
				selected = append(selected, pid)
				seen[pid] = true
			}
		}
	}
	// Every process is inspected before anything is attached, so that a
	// bad input leaves nothing attached half-way.
	if err := a.Prepare(selected); err != nil {
		_ = a.Close()
		return fail(stderr, splitErrors(err)...)
	}
	// Sinks are made once the inputs are known good.
	if otlpEndpoint != "" || otlpFromEnv {
		otlp, err := export.NewOTLP(ctx, log, otlpEndpoint)
		if err != nil {
			_ = a.Close()
			return fail(stderr, err)
		}
		a.AddSink(otlp)
	}
	switch output {
	case "text":
		a.AddSink(export.NewText(stdout))
	case "json":
		a.AddSink(export.NewJSONLines(stdout))
	}

	// Signals are caught from before the first attach: a SIGINT that comes
	// while several processes are being attached detaches what is attached
	// and exits cleanly instead of killing the agent half-way.
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	if err := a.Start(sigCtx); err != nil {
		if cerr := a.Close(); cerr != nil {
			log.Error("detaching", "err", cerr)
		}
		return fail(stderr, err)
	}

	// With --exe or --port the agent runs until stopped, picking up the
	// processes that start and match; with --pid only, until they exit.
	a.Run(sigCtx, sel, seen, o.statsInterval)
	// A second signal while flushing means: stop now.
	stopSignals()
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		<-c
		fmt.Fprintln(stderr, "zerotrace: interrupted again; exiting without flushing")
		os.Exit(130)
	}()
	// Detach first so that nothing new arrives, then drain the ring
	// buffer, and let the pipeline flush stage by stage.
	if err := a.Close(); err != nil {
		log.Error("detaching", "err", err)
	}
	return nil
}

// splitErrors undoes errors.Join, so that each error gets its own line.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
