// Package agent is what `zerotrace attach` runs: the pipeline that turns
// ring-buffer records into exported spans (reader → correlator → sinks, see
// pipeline.go) and the attacher that puts probes on processes and takes them
// off again (attach.go). The command only turns flags into a Config.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/correlate/redact"
	"github.com/zerotrace/zerotrace/export"
	"github.com/zerotrace/zerotrace/export/metrics"
	"github.com/zerotrace/zerotrace/export/servicemap"
	"github.com/zerotrace/zerotrace/export/web"
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/inject"
)

// Config is what the agent needs; the command has validated it.
type Config struct {
	// Log takes the agent's diagnostics; Out the lines the user reads
	// ("zerotrace: attached to …"), both on stderr.
	Log *slog.Logger
	Out io.Writer
	// ServiceName is the service.name of traced processes that neither
	// a rule in Services nor their own environment names (identity.go).
	ServiceName string
	// Services name the processes they match, before anything else.
	Services []ServiceRule
	Inject   inject.Mode
	Redactor *redact.Redactor
	// Sinks are the exporters the user chose (OTLP, text, JSON); the
	// service map and the metrics are added by the agent. OTLP, when set,
	// is the OTLP sink among them, for its counts.
	Sinks []export.Sink
	OTLP  *export.OTLP
	// QueueLen bounds each sink's queue of spans.
	QueueLen int
	// Listen is where the map page and /metrics are served; "" or "off"
	// serves nothing.
	Listen string
	// DropBackground keeps background spans (model.Span.Background: calls
	// a Go program makes outside any request) from the exporters; the
	// service map and the metrics still count them.
	DropBackground bool
	// GenAI configures model calls (the gen_ai section): content
	// capture, prices, providers, routes; nil: the defaults.
	GenAI *genai.Config
	// Phases are the functions of traced Go programs to make INTERNAL
	// spans of (probes/phases): "main.buildPrompt",
	// "github.com/acme/rag.(*Store).Search", "main.Map[...]".
	Phases []string
}

// mapWindow is the sliding window of the service map's statistics.
const mapWindow = 5 * time.Minute

// Agent is a running zerotrace agent.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	shared    *events.Shared
	injection *inject.Choice
	corr      *correlate.Correlator
	namer     *typeNamer
	attacher  *attacher
	// Made by Start.
	pipe    *pipeline
	rep     *reporter
	web     *web.Server
	running bool // Start succeeded: Close reports what was traced
}

// New checks privileges and kernel features, creates the shared maps and
// chooses how context is injected, printing nothing: a bad input is one
// line, from the command. Close releases everything.
func New(cfg Config) (*Agent, error) {
	if err := probes.CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := probes.CheckKernel(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		cfg.Log.Debug("could not raise RLIMIT_MEMLOCK", "err", err)
	}
	a := &Agent{cfg: cfg, log: cfg.Log}
	var err error
	if a.shared, err = events.LoadShared(events.DefaultRingSize); err != nil {
		return nil, err
	}
	if a.injection, err = inject.Choose(cfg.Inject, a.shared); err != nil {
		a.shared.Close()
		return nil, err
	}
	a.corr = correlate.New(cfg.Log, cfg.Redactor)
	a.corr.SetGenAI(cfg.GenAI)
	a.namer = newTypeNamer()
	a.attacher = newAttacher(cfg, a.shared, a.injection, a.corr, a.namer)
	return a, nil
}

// Prepare inspects every process of pids without touching the kernel, so
// that a bad one (one line each in the error) leaves nothing attached. A
// process that is not a Go program will be traced from the kernel.
func (a *Agent) Prepare(pids []int) error { return a.attacher.prepareAll(pids) }

// Start starts kernel-level tracing, the pipeline and the local endpoint,
// then attaches every prepared process, all or nothing. It stops early,
// without error, when ctx is cancelled (a signal while attaching).
func (a *Agent) Start(ctx context.Context) error {
	// Kernel-level tracing: the connections of every traced process, and
	// the protocols of those that are not Go programs. Set up before any
	// uprobe, so that failing leaves nothing attached. Go programs are
	// traced without it when it cannot run.
	if err := a.attacher.startKernelTracing(len(a.attacher.kernelPIDs) > 0); err != nil {
		return fmt.Errorf("tracing processes that are not Go programs (pid %v): %w", a.attacher.kernelPIDs, err)
	}
	switch a.injection.Mode {
	case inject.Off:
		fmt.Fprintf(a.cfg.Out, "zerotrace: context injection off (%s): a trace continues only into services on this host traced by this agent\n", a.injection.Why)
	default:
		fmt.Fprintf(a.cfg.Out, "zerotrace: context injection: %s\n", a.injection.Mode)
	}

	// The service map and metrics see the same redacted spans as the
	// exporters.
	graph := servicemap.New(mapWindow)
	reg := metrics.New()
	graph.OnCall = reg.ObserveCall
	graph.Connections = a.corr.Connections().Snapshot
	traceSinks := a.cfg.Sinks[:len(a.cfg.Sinks):len(a.cfg.Sinks)]
	if a.cfg.DropBackground {
		traceSinks = make([]export.Sink, len(a.cfg.Sinks))
		for i, s := range a.cfg.Sinks {
			traceSinks[i] = export.Filter(s, func(s *model.Span) bool { return !s.Background() })
		}
		fmt.Fprintln(a.cfg.Out, "zerotrace: background spans (calls made outside any request) are not exported (spans.drop_background)")
	}
	sinks := append(traceSinks, graph, reg)
	var err error
	if a.pipe, err = newPipeline(a.shared, a.corr, a.namer, export.NewFanout(a.log, a.cfg.QueueLen, sinks...), a.log); err != nil {
		return err
	}
	a.rep = &reporter{log: a.log, shared: a.shared, pipe: a.pipe, otlp: a.cfg.OTLP, inject: a.injection.Mode, dropBackground: a.cfg.DropBackground, genai: a.attacher.genAILosses}
	reg.SetLosses(a.rep.losses)
	reg.SetGauges(a.gauges)
	// Build and start the whole pipeline before attaching, so that the
	// ring buffer is drained from the first record on.
	a.pipe.start()

	// Served from before the first attach, so that its address is known
	// once the agent says it attached. Without it the agent still traces:
	// say so and go on.
	if a.cfg.Listen != "" && a.cfg.Listen != "off" {
		if srv, err := web.Listen(a.cfg.Listen, web.Handler(graph, reg, a.corr.Connections()), a.log); err != nil {
			fmt.Fprintf(a.cfg.Out, "zerotrace: no service map endpoint: %v\n", err)
		} else {
			a.web = srv
			fmt.Fprintf(a.cfg.Out, "zerotrace: service map on http://%s/ (map as JSON at /api/map, Prometheus metrics at /metrics)\n", srv.Addr())
		}
	}
	if err := a.attacher.attachPrepared(ctx); err != nil {
		return err
	}
	a.running = true
	return nil
}

// Run traces until ctx is done. With an empty sel it also returns once
// every process attached by Start has exited; otherwise it attaches, once
// a second, to the processes that start later and match sel (a process
// that cannot be traced gets one line and the agent goes on; seen holds
// the PIDs already handled, and Run owns it from now on). Every
// statsInterval (0: never) it logs what was lost since the last report.
func (a *Agent) Run(ctx context.Context, sel Selector, seen map[int]bool, statsInterval time.Duration) {
	var exited <-chan struct{}
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go a.attacher.reap(watchCtx)
	if sel.Empty() {
		exited = watchExits(a.attacher.pids(), a.log)
	} else {
		fmt.Fprintf(a.cfg.Out, "zerotrace: watching for processes that match %s\n", sel)
		go a.attacher.watchNew(watchCtx, sel, seen)
	}
	var tick <-chan time.Time
	if statsInterval > 0 {
		t := time.NewTicker(statsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(a.cfg.Out, "zerotrace: detaching")
			return
		case <-exited:
			fmt.Fprintln(a.cfg.Out, "zerotrace: every traced process has exited; detaching")
			return
		case <-tick:
			a.rep.reportLoss(false)
		}
	}
}

// Close detaches from every process, drains the ring buffer, lets every
// sink flush and, when the agent ran, prints the summary of what was
// traced and lost.
func (a *Agent) Close() error {
	errs := []error{a.attacher.close()}
	if a.injection.Injector != nil {
		if err := a.injection.Injector.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detaching context injection: %w", err))
		}
		a.injection.Injector = nil
	}
	if a.pipe != nil {
		// Nothing is attached any more: what is in the ring buffer is
		// all there will be.
		if err := a.pipe.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if a.running {
		a.rep.reportLoss(true)
	}
	if a.web != nil {
		errs = append(errs, a.web.Close())
	}
	errs = append(errs, a.shared.Close())
	return errors.Join(errs...)
}

// AddSink adds an exporter; call it before Start.
func (a *Agent) AddSink(s export.Sink) {
	a.cfg.Sinks = append(a.cfg.Sinks, s)
	if o, ok := s.(*export.OTLP); ok {
		a.cfg.OTLP = o
	}
}
