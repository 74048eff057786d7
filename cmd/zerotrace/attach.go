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
	"sync"
	"syscall"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	"github.com/cilium/ebpf/rlimit"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/export"
	"github.com/zerotrace/zerotrace/export/metrics"
	"github.com/zerotrace/zerotrace/export/servicemap"
	"github.com/zerotrace/zerotrace/export/web"
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/inject"
	"github.com/zerotrace/zerotrace/probes/session"
	"github.com/zerotrace/zerotrace/probes/syscalls"
)

// defaultListen is where the agent serves its map and metrics: loopback
// only, since neither is protected.
const defaultListen = "127.0.0.1:9464"

// mapWindow is the sliding window of the service map's statistics.
const mapWindow = 5 * time.Minute

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
		Long: "Attach probes to running Go processes and export a span for every request they\n" +
			"handle, until SIGINT or SIGTERM; then detach and exit.\n\n" +
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
	f.StringVar(&o.serviceName, "service-name", "", "service.name of the traced processes (default OTEL_SERVICE_NAME, else the executable name)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	f.DurationVar(&o.statsInterval, "stats-interval", 30*time.Second, "how often to report lost events on stderr (0 disables)")
	f.IntVar(&o.queueLen, "queue", 16384, "events and spans buffered between pipeline stages before dropping")
	f.StringVar(&o.configPath, "config", "", "YAML configuration file (redaction settings; see README)")
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
	sel := selector{exes: o.exes, ports: o.ports}
	if len(o.pids) == 0 && sel.empty() {
		return fail(stderr, errors.New("nothing to trace: give --pid, --exe or --port"))
	}
	if err := sel.check(); err != nil {
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

	// Check everything before touching any process, so that a bad input
	// leaves nothing attached half-way.
	if err := probes.CheckPrivileges(); err != nil {
		return fail(stderr, err)
	}
	if err := probes.CheckKernel(); err != nil {
		return fail(stderr, err)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("could not raise RLIMIT_MEMLOCK", "err", err)
	}
	shared, err := events.LoadShared(events.DefaultRingSize)
	if err != nil {
		return fail(stderr, err)
	}
	defer shared.Close()
	injection, err := inject.Choose(injectMode, shared)
	if err != nil {
		return fail(stderr, err)
	}
	// Error paths below; the normal path closes it after detaching.
	defer func() {
		if injection.Injector != nil {
			_ = injection.Injector.Close()
		}
	}()

	var plans []*session.Plan
	var kernelPIDs []int // not Go: traced from the kernel
	var errs []error
	seen := map[int]bool{}
	selected := slices.Clone(o.pids)
	if !sel.empty() {
		for _, pid := range processes(os.Getpid()) {
			if _, ok := sel.matches(pid); ok {
				selected = append(selected, pid)
			}
		}
	}
	for _, pid := range selected {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		p, err := session.Prepare(pid, session.Options{InjectWriteUser: injection.Mode == inject.WriteUser})
		if errors.Is(err, gobin.ErrNotGo) {
			kernelPIDs = append(kernelPIDs, pid)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plans = append(plans, p)
	}
	defer func() {
		for _, p := range plans {
			p.Target.Close()
		}
	}()
	if len(errs) > 0 {
		return fail(stderr, errs...)
	}
	// Kernel-level tracing: the connections of every traced process, and
	// the HTTP/1.x of those that are not Go programs. Set up before any
	// uprobe, so that failing leaves nothing attached. Go programs are
	// traced without it when it cannot run.
	sysTracer, err := syscalls.NewTracer(shared)
	if err != nil {
		if len(kernelPIDs) > 0 {
			return fail(stderr, fmt.Errorf("tracing processes that are not Go programs (pid %v): %w", kernelPIDs, err))
		}
		fmt.Fprintf(stderr, "zerotrace: no connection tracking and no tracing of programs that are not Go: %v\n", err)
		sysTracer = nil
	}
	defer func() {
		if sysTracer != nil {
			_ = sysTracer.Close()
		}
	}()
	switch injection.Mode {
	case inject.Off:
		fmt.Fprintf(stderr, "zerotrace: context injection off (%s): a trace continues only into services on this host traced by this agent\n", injection.Why)
	default:
		fmt.Fprintf(stderr, "zerotrace: context injection: %s\n", injection.Mode)
	}

	var sinks []export.Sink
	var otlp *export.OTLP
	if otlpEndpoint != "" || otlpFromEnv {
		otlp, err = export.NewOTLP(ctx, log, otlpEndpoint)
		if err != nil {
			return fail(stderr, err)
		}
		sinks = append(sinks, otlp)
	}
	switch output {
	case "text":
		sinks = append(sinks, export.NewText(stdout))
	case "json":
		sinks = append(sinks, export.NewJSONLines(stdout))
	}
	// The service map and metrics see the same redacted spans as the
	// exporters.
	graph := servicemap.New(mapWindow)
	reg := metrics.New()
	graph.OnCall = reg.ObserveCall
	sinks = append(sinks, graph, reg)

	// Build and start the whole pipeline before attaching, so that the
	// ring buffer is drained from the first event on.
	corr := correlate.New(log, red)
	if sysTracer != nil {
		corr.Connections().SetLive(sysTracer.LiveBytes)
	}
	graph.Connections = corr.Connections().Snapshot
	clock := events.NewClock()
	namer := newTypeNamer()
	reader, err := events.NewReader(shared, o.queueLen, clock, namer.name, log)
	if err != nil {
		return fail(stderr, err)
	}
	fan := export.NewFanout(log, o.queueLen, sinks...)
	spans := make(chan *model.Span, o.queueLen)

	readCtx, stopReading := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var readErr error
	wg.Add(3)
	go func() { defer wg.Done(); readErr = reader.Run(readCtx) }()
	go func() { defer wg.Done(); corr.Run(reader.Events(), spans) }()
	go func() { defer wg.Done(); fan.Run(spans, 10*time.Second) }()
	// stopPipeline drains what is left and flushes the exporters; call it
	// once nothing is attached any more.
	stopPipeline := func() {
		stopReading()
		wg.Wait()
		if readErr != nil {
			log.Error("ring buffer reader stopped", "err", readErr)
		}
	}

	// Served from before the first attach, so that its address is known
	// once the agent says it attached.
	if o.listen != "" && o.listen != "off" {
		// Without it the agent still traces: say so and go on.
		if srv, err := web.Listen(o.listen, web.Handler(graph, reg, corr.Connections()), log); err != nil {
			fmt.Fprintf(stderr, "zerotrace: no service map endpoint: %v\n", err)
		} else {
			defer srv.Close()
			fmt.Fprintf(stderr, "zerotrace: service map on http://%s/ (map as JSON at /api/map, Prometheus metrics at /metrics)\n", srv.Addr())
		}
	}

	// attached is written by the first attach below and by the watcher of
	// --exe and --port, and read at detach.
	var attachMu sync.Mutex
	var attached []*session.Attached
	detached := false // set at the end: no attach after that
	errStopping := errors.New("the agent is stopping")
	detachAll := func() {
		attachMu.Lock()
		defer attachMu.Unlock()
		detached = true
		for _, a := range attached {
			if err := a.Detach(); err != nil {
				log.Error("detaching", "target", a.Plan.Target.String(), "err", err)
			}
		}
		attached = nil
	}
	// attachPlan attaches one Go process; attachKernel one that is not.
	attachPlan := func(p *session.Plan) error {
		attachMu.Lock()
		defer attachMu.Unlock()
		if detached {
			return errStopping
		}
		// The process's connections go into the sockhash before its
		// probes arm any context: a request armed on a connection that
		// is not there yet would go out without its header.
		var injected string
		if injection.Injector != nil {
			// Without it this process's requests carry no context to
			// other hosts; everything else keeps working.
			if what, err := injection.Injector.AttachProcess(p.Target.PID); err != nil {
				injected = "no context injection: " + err.Error()
			} else {
				injected = what
			}
		}
		// Register first: events can arrive as soon as the probes are in.
		namer.add(p.Target)
		corr.Register(model.NewProcess(uint32(p.Target.PID), p.Target.Exe, serviceName, p.Target.Bin.GoVersion))
		a, err := session.Attach(p, shared)
		if err != nil {
			return err
		}
		attached = append(attached, a)
		if sysTracer != nil {
			if err := followConnections(sysTracer, corr, p.Target.PID); err != nil {
				fmt.Fprintf(stderr, "zerotrace: %s: no connection tracking: %v\n", p.Target, err)
			}
		}
		if injected != "" {
			fmt.Fprintf(stderr, "zerotrace: %s: %s\n", p.Target, injected)
		}
		for _, n := range p.Notes {
			fmt.Fprintf(stderr, "zerotrace: %s: %s\n", p.Target, n)
		}
		// Last: tests and scripts take this line to mean ready.
		fmt.Fprintln(stderr, "zerotrace:", a.Summary)
		return nil
	}
	attachKernel := func(pid int) error {
		attachMu.Lock()
		defer attachMu.Unlock()
		if detached {
			return errStopping
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if sysTracer == nil {
			return fmt.Errorf("pid %d (%s) is not a Go program and kernel-level tracing cannot run here", pid, exe)
		}
		corr.Register(model.NewProcess(uint32(pid), exe, serviceName, ""))
		if err := followConnections(sysTracer, corr, pid); err != nil {
			return err
		}
		if err := sysTracer.AddHTTP(pid); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "zerotrace: attached to pid %d (%s): not a Go program, so its HTTP/1.x is traced from the kernel (syscall tracepoints on its socket reads, writes and closes)\n", pid, exe)
		return nil
	}
	// Signals are caught from before the first attach: a SIGINT that comes
	// while several processes are being attached detaches what is attached
	// and exits cleanly instead of killing the agent half-way.
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	for _, p := range plans {
		if sigCtx.Err() != nil {
			break
		}
		if err := attachPlan(p); err != nil {
			detachAll()
			stopPipeline()
			return fail(stderr, err)
		}
	}
	for _, pid := range kernelPIDs {
		if err := attachKernel(pid); err != nil {
			detachAll()
			stopPipeline()
			return fail(stderr, err)
		}
	}

	// With --exe or --port the agent runs until stopped, picking up the
	// processes that start and match; with --pid only, until they exit.
	var exited <-chan struct{}
	watchCtx, stopWatching := context.WithCancel(sigCtx)
	defer stopWatching()
	if sel.empty() {
		pids := make([]int, 0, len(plans)+len(kernelPIDs))
		for _, p := range plans {
			pids = append(pids, p.Target.PID)
		}
		exited = watchExits(append(pids, kernelPIDs...), log)
	} else {
		fmt.Fprintf(stderr, "zerotrace: watching for processes that match %s\n", sel)
		go watchNew(watchCtx, sel, seen, func(pid int, why string) {
			p, err := session.Prepare(pid, session.Options{InjectWriteUser: injection.Mode == inject.WriteUser})
			switch {
			case errors.Is(err, gobin.ErrNotGo):
				err = attachKernel(pid)
			case err == nil:
				if err = attachPlan(p); err != nil {
					p.Target.Close()
				} else {
					attachMu.Lock()
					plans = append(plans, p) // closed with the others at exit
					attachMu.Unlock()
				}
			}
			if err != nil {
				// One line; the agent goes on with what it traces.
				fmt.Fprintf(stderr, "zerotrace: pid %d matched %s but cannot be traced: %v\n", pid, why, err)
			}
		})
	}

	rep := &reporter{log: log, shared: shared, reader: reader, corr: corr, fan: fan, otlp: otlp, inject: injection.Mode}
	reg.SetLosses(rep.losses)
	var tick <-chan time.Time
	if o.statsInterval > 0 {
		t := time.NewTicker(o.statsInterval)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case <-sigCtx.Done():
			fmt.Fprintln(stderr, "zerotrace: detaching")
			break wait
		case <-exited:
			fmt.Fprintln(stderr, "zerotrace: every traced process has exited; detaching")
			break wait
		case <-tick:
			rep.reportLoss(false)
		}
	}
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
	stopWatching()
	detachAll()
	if sysTracer != nil {
		if err := sysTracer.Close(); err != nil {
			log.Error("detaching the syscall tracepoints", "err", err)
		}
		sysTracer = nil
	}
	if injection.Injector != nil {
		if err := injection.Injector.Close(); err != nil {
			log.Error("detaching context injection", "err", err)
		}
		injection.Injector = nil
	}
	stopPipeline()
	rep.reportLoss(true)
	return nil
}

// followConnections follows the TCP connections of process pid: those it
// opens or accepts from now on, and those it already has (listed in the
// table as opened before the agent, their close reported like the others).
// A connection made between the look at /proc and the start of the
// following is missed: a window of a moment, at attach only.
func followConnections(sys *syscalls.Tracer, corr *correlate.Correlator, pid int) error {
	socks, err := probes.ProcessTCP(pid)
	if err != nil {
		return err
	}
	var listening []int
	for _, s := range socks {
		if s.Listening {
			listening = append(listening, int(s.Local.Port()))
		}
	}
	if err := sys.AddConnections(pid, listening); err != nil {
		return err
	}
	adopted, err := sys.AdoptConnections(pid, socks, time.Now())
	for _, e := range adopted {
		corr.AddConnection(e)
	}
	return err
}

// typeNamer names the dynamic types behind itabs in events (errors,
// database drivers) from the traced binaries' itab symbols. Targets are
// added as they are attached.
type typeNamer struct {
	mu      sync.RWMutex
	targets map[uint32]*probes.Target
}

func newTypeNamer() *typeNamer { return &typeNamer{targets: map[uint32]*probes.Target{}} }

func (n *typeNamer) add(t *probes.Target) {
	n.mu.Lock()
	n.targets[uint32(t.PID)] = t
	n.mu.Unlock()
}

func (n *typeNamer) name(pid uint32, itab uint64) string {
	n.mu.RLock()
	t := n.targets[pid]
	n.mu.RUnlock()
	if t == nil || itab < t.LoadBias {
		return ""
	}
	name, _ := t.Bin.ItabType(itab - t.LoadBias)
	return name
}

// watchNew looks for processes that start and match sel, once a second,
// and hands each new one to attach once. seen holds the PIDs already
// handled; watchNew owns it from now on.
func watchNew(ctx context.Context, sel selector, seen map[int]bool, attach func(pid int, why string)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	self := os.Getpid()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, pid := range processes(self) {
			if seen[pid] {
				continue
			}
			why, ok := sel.matches(pid)
			if !ok {
				continue
			}
			seen[pid] = true
			if ctx.Err() != nil {
				return
			}
			attach(pid, why)
		}
	}
}

// watchExits returns a channel closed when every traced process has exited.
// It uses pidfds, which become readable when the process exits.
func watchExits(pids []int, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	var fds []unix.PollFd
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			log.Debug("cannot watch process exit", "pid", pid, "err", err)
			return make(chan struct{}) // never closes: run until a signal
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	go func() {
		defer close(done)
		remaining := len(fds)
		for remaining > 0 {
			n, err := unix.Poll(fds, -1)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			if n == 0 {
				continue
			}
			for i := range fds {
				if fds[i].Fd >= 0 && fds[i].Revents != 0 {
					log.Info("traced process exited", "pid", pids[i])
					unix.Close(int(fds[i].Fd))
					fds[i].Fd = -1 // poll ignores negative fds
					remaining--
				}
			}
		}
	}()
	return done
}
