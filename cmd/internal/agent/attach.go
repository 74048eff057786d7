package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/inject"
	"github.com/zerotrace/zerotrace/probes/openssl"
	"github.com/zerotrace/zerotrace/probes/session"
	"github.com/zerotrace/zerotrace/probes/syscalls"
)

// errStopping refuses an attach that comes after the agent began detaching.
var errStopping = errors.New("the agent is stopping")

// attacher puts probes on processes and takes them off: uprobes for Go
// programs (probes/session), syscall tracepoints for the others
// (probes/syscalls), and connection following and context injection for
// both. The first attach and the watcher of --exe/--port may run at once.
type attacher struct {
	cfg       Config
	shared    *events.Shared
	injection *inject.Choice
	corr      *correlate.Correlator
	namer     *typeNamer

	mu       sync.Mutex
	sys      *syscalls.Tracer // nil when kernel-level tracing cannot run
	sysTried bool
	// genaiFinal is what sys counted of model calls' bodies not copied,
	// read as it closed.
	genaiFinal syscalls.GenAILosses
	tls        *openssl.Tracer // nil until a process needs it, or when it cannot load
	tlsTried   bool
	// noTLS are the processes traced from the kernel that had no OpenSSL
	// when attached: each is looked at again once a second, since a
	// program may load libssl later (Python imports ssl when it first
	// needs it).
	noTLS map[int]bool
	// tlsChildren are the children of processes traced from the kernel
	// (forked after the attach: a pre-forking server's new workers) whose
	// TLS plaintext is read, or tried, true once attached.
	tlsChildren map[int]bool
	plans       []*session.Plan // closed at the end
	attached    []*session.Attached
	traced      []int // every PID attached, Go or not
	detached    bool  // set at the end: no attach after that
	// live are the attached processes still held, by PID: the reaper
	// takes each off once it has exited.
	live map[int]*liveProc
	// What prepareAll found, for attachPrepared.
	prepared   []*session.Plan
	kernelPIDs []int // not Go programs: traced from the kernel
}

func newAttacher(cfg Config, shared *events.Shared, injection *inject.Choice, corr *correlate.Correlator, namer *typeNamer) *attacher {
	return &attacher{cfg: cfg, shared: shared, injection: injection, corr: corr, namer: namer, live: map[int]*liveProc{}}
}

// genAILosses reads what the kernel tracing did not copy of model calls'
// bodies: zero when it never ran, its last counts once it closed.
func (at *attacher) genAILosses() syscalls.GenAILosses {
	at.mu.Lock()
	defer at.mu.Unlock()
	if at.sys == nil {
		return at.genaiFinal
	}
	g, err := at.sys.GenAILosses()
	if err != nil {
		return at.genaiFinal
	}
	return g
}

// liveProc is an attached process, watched through its pidfd (which, unlike
// the PID, cannot come to name another process).
type liveProc struct {
	pidfd  int
	att    *session.Attached // nil for a process traced from the kernel
	plan   *session.Plan
	exited time.Time // when the reaper first saw it gone
}

// watch starts watching process pid for its exit; call with a.mu held.
func (a *attacher) watch(pid int, att *session.Attached, plan *session.Plan) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		// Already gone: the reaper cannot see it, but nothing of it
		// lingers in the kernel either; the correlator forgets it.
		a.cfg.Log.Debug("cannot watch process exit", "pid", pid, "err", err)
		fd = -1
	}
	a.live[pid] = &liveProc{pidfd: fd, att: att, plan: plan}
}

// reapGrace is how long an exited process's state is kept: its last
// records may still be in the ring buffer, which the reader drains every
// 20 ms.
const reapGrace = 2 * time.Second

// reap takes exited processes off, once a second until ctx is done: their
// probes are detached and unloaded, their binary released, and the
// correlator and sinks forget them. A service that restarts its workers,
// or a watcher that attaches to every new match, does not grow the agent.
func (a *attacher) reap(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.reapOnce(now)
			a.retryTLS()
		}
	}
}

func (a *attacher) reapOnce(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.detached {
		return
	}
	for pid, lp := range a.live {
		if lp.exited.IsZero() {
			if !pidfdExited(lp.pidfd) {
				continue
			}
			lp.exited = now
		}
		if now.Sub(lp.exited) < reapGrace {
			continue
		}
		// Unnamed first: nothing may read its binary once it is closed.
		a.namer.remove(uint32(pid))
		if lp.att != nil {
			if err := lp.att.Detach(); err != nil {
				a.cfg.Log.Warn("detaching an exited process", "pid", pid, "err", err)
			}
			a.attached = slices.DeleteFunc(a.attached, func(x *session.Attached) bool { return x == lp.att })
		}
		if lp.plan != nil {
			lp.plan.Target.Close()
			a.plans = slices.DeleteFunc(a.plans, func(x *session.Plan) bool { return x == lp.plan })
		}
		if lp.pidfd >= 0 {
			unix.Close(lp.pidfd)
		}
		if a.tls != nil {
			if err := a.tls.Detach(pid); err != nil {
				a.cfg.Log.Warn("detaching the TLS probes of an exited process", "pid", pid, "err", err)
			}
		}
		if a.sys != nil {
			// The kernel forgot it at its exit; this detaches what no
			// traced process needs any more.
			if err := a.sys.Forget(pid); err != nil {
				a.cfg.Log.Warn("forgetting an exited process in the kernel", "pid", pid, "err", err)
			}
		}
		a.corr.Unregister(uint32(pid))
		delete(a.live, pid)
		a.cfg.Log.Debug("forgot an exited process", "pid", pid)
	}
}

// pidfdExited tells whether the process behind pidfd has exited (its pidfd
// is readable then); -1 reads as exited.
func pidfdExited(fd int) bool {
	if fd < 0 {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents != 0
}

// tracing is how many attached processes are still held.
func (a *attacher) tracing() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live)
}

func (a *attacher) prepare(pid int) (*session.Plan, error) {
	p, err := session.Prepare(pid, session.Options{InjectWriteUser: a.injection.Mode == inject.WriteUser, Phases: len(a.cfg.Phases) > 0})
	if err != nil {
		return nil, err
	}
	// Planned: the binary's tables are not needed to attach, and holding
	// them while the next process is prepared would add up.
	p.Target.ReleaseTables()
	return p, nil
}

// returnMemory gives the heap freed by parsing binaries and loading probes
// back to the system once a burst of attaching is over, the kernel's types
// shared by the loads and the parsed probe objects first. Without it the agent would keep about twice
// the heap that planning the largest binary took, for its whole life: the
// Go runtime returns only memory above its heap goal, and an idle agent
// triggers no collection that would lower the goal.
func (a *attacher) returnMemory() {
	a.shared.ReleaseKernelTypes()
	probes.ReleaseSpecs()
	debug.FreeOSMemory()
}

// prepareAll inspects every process of pids; a bad one (one line each in
// the error) leaves nothing prepared.
func (a *attacher) prepareAll(pids []int) error {
	var errs []error
	seen := map[int]bool{}
	for _, pid := range pids {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		p, err := a.prepare(pid)
		if errors.Is(err, gobin.ErrNotGo) {
			a.kernelPIDs = append(a.kernelPIDs, pid)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		a.plans = append(a.plans, p)
		a.mu.Unlock()
		a.prepared = append(a.prepared, p)
	}
	return errors.Join(errs...)
}

// attachPrepared attaches what prepareAll found, one by one; the caller
// detaches everything on an error.
func (a *attacher) attachPrepared(ctx context.Context) error {
	for _, p := range a.prepared {
		if ctx.Err() != nil {
			return nil
		}
		if err := a.attachPlan(p); err != nil {
			return err
		}
	}
	for _, pid := range a.kernelPIDs {
		if ctx.Err() != nil {
			return nil
		}
		if err := a.attachKernel(pid); err != nil {
			return err
		}
	}
	a.returnMemory()
	return nil
}

// startKernelTracing loads the syscall tracer once. Its failure is an error
// only when a process needs it; otherwise the user is told what is missing.
func (a *attacher) startKernelTracing(needed bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sysTried {
		if needed && a.sys == nil {
			return errors.New("kernel-level tracing cannot run here")
		}
		return nil
	}
	a.sysTried = true
	sys, err := syscalls.NewTracer(a.shared)
	if err != nil {
		if needed {
			return err
		}
		fmt.Fprintf(a.cfg.Out, "zerotrace: no connection tracking and no tracing of programs that are not Go: %v\n", err)
		return nil
	}
	a.sys = sys
	a.corr.Connections().SetLive(sys.LiveBytes)
	return nil
}

// attachPlan attaches one Go process.
func (a *attacher) attachPlan(p *session.Plan) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.detached {
		return errStopping
	}
	// The process's connections go into the sockhash before its probes
	// arm any context: a request armed on a connection that is not there
	// yet would go out without its header.
	var injected string
	if a.injection.Injector != nil {
		// Without it this process's requests carry no context to other
		// hosts; everything else keeps working.
		if what, err := a.injection.Injector.AttachProcess(p.Target.PID); err != nil {
			injected = "no context injection: " + err.Error()
		} else {
			injected = what
		}
	}
	// Register first: events can arrive as soon as the probes are in.
	a.namer.add(p.Target)
	id := a.register(p.Target.PID, p.Target.Exe, p.Target.Bin.GoVersion)
	att, err := session.Attach(p, a.shared)
	if err != nil {
		return err
	}
	if len(a.cfg.Phases) > 0 {
		// A phase that cannot be traced is refused on its own; the
		// process stays attached without it (or without any, on an error).
		refused, err := att.AttachPhases(a.cfg.Phases, a.shared)
		if err != nil {
			fmt.Fprintf(a.cfg.Out, "zerotrace: %s: no phases: %v\n", p.Target, err)
		}
		for _, r := range refused {
			fmt.Fprintf(a.cfg.Out, "zerotrace: %s: %s\n", p.Target, r)
		}
	}
	a.attached = append(a.attached, att)
	a.traced = append(a.traced, p.Target.PID)
	a.watch(p.Target.PID, att, p)
	if a.sys != nil {
		if err := a.followConnections(p.Target.PID); err != nil {
			fmt.Fprintf(a.cfg.Out, "zerotrace: %s: no connection tracking: %v\n", p.Target, err)
		}
	}
	if injected != "" {
		fmt.Fprintf(a.cfg.Out, "zerotrace: %s: %s\n", p.Target, injected)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(a.cfg.Out, "zerotrace: %s: %s\n", p.Target, n)
	}
	for _, d := range p.Details {
		a.cfg.Log.Debug(d, "target", p.Target.String())
	}
	for _, u := range att.Uprobes {
		// What each probe costs a request: an emulated instruction (the
		// stack-check jump of an entry) about a tenth of a single-stepped
		// one (a RET). make bench reads these lines.
		cost := "single-stepped"
		if u.Emulated {
			cost = "emulated"
		}
		at := "entry"
		switch {
		case u.Return:
			at = "RET"
		case u.Inside:
			at = "inside" // a chosen instruction in the body, such as the jump after a call
		}
		a.cfg.Log.Debug("uprobe attached", "target", p.Target.String(), "instrumentation", u.Instrumentation,
			"function", u.Symbol, "program", u.Program, "at", at, "offset", fmt.Sprintf("%#x", u.Offset),
			"instruction", u.Text, "cost", cost)
	}
	// Last: tests and scripts take this line to mean ready.
	fmt.Fprintf(a.cfg.Out, "zerotrace: %s; service %q (from %s)\n", att.Summary, id.name, id.source)
	return nil
}

// attachKernel attaches one process that is not a Go program.
func (a *attacher) attachKernel(pid int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.detached {
		return errStopping
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if a.sys == nil {
		return fmt.Errorf("pid %d (%s) is not a Go program and kernel-level tracing cannot run here", pid, exe)
	}
	id := a.register(pid, exe, "")
	if err := a.followConnections(pid); err != nil {
		return err
	}
	if err := a.sys.AddHTTP(pid); err != nil {
		return err
	}
	a.traced = append(a.traced, pid)
	a.watch(pid, nil, nil)
	tls := a.attachTLS(pid)
	fmt.Fprintf(a.cfg.Out, "zerotrace: attached to pid %d (%s): not a Go program, so its HTTP/1.x is traced from the kernel (raw syscall tracepoints on its socket reads, writes and closes)%s; service %q (from %s)\n", pid, exe, tls, id.name, id.source)
	return nil
}

// register names process pid (identity.go) and makes its events
// attributable to it.
func (a *attacher) register(pid int, exe, goVersion string) identity {
	id := resolveIdentity(pid, exe, a.cfg.ServiceName, a.cfg.Services, a.cfg.Redactor)
	p := model.NewProcess(uint32(pid), exe, id.name, goVersion)
	p.ServiceSource = id.source
	p.AddResource(id.attrs...)
	a.corr.Register(p)
	return id
}

// attachTLS reads the TLS plaintext of process pid, traced from the
// kernel, at its OpenSSL, and says how for the attach line. Without it the
// process is still traced (a TLS connection then shows with its server
// name only). Call with a.mu held.
func (a *attacher) attachTLS(pid int) string {
	if !a.tlsTried {
		a.tlsTried = true
		fds, threads, losses := a.sys.TLSMaps()
		t, err := openssl.NewTracer(a.shared, fds, threads, losses)
		if err != nil {
			fmt.Fprintf(a.cfg.Out, "zerotrace: no TLS plaintext for programs that are not Go: %v\n", err)
		}
		a.tls = t
	}
	if a.tls == nil {
		return ""
	}
	s, err := a.tls.Attach(pid)
	switch {
	case errors.Is(err, openssl.ErrNoTLS):
		if a.noTLS == nil {
			a.noTLS = map[int]bool{}
		}
		a.noTLS[pid] = true
		return ""
	case err != nil:
		return "; its TLS plaintext is not read: " + err.Error()
	}
	return "; TLS plaintext read at " + s.String()
}

// retryTLS looks again at the processes that had no OpenSSL when attached,
// and reads the TLS plaintext of those that have loaded it since, and of
// the children traced processes forked since (uprobes are per process: a
// child has none of its parent's).
func (a *attacher) retryTLS() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.detached || a.tls == nil {
		return
	}
	a.childrenTLS()
	for pid := range a.noTLS {
		if _, live := a.live[pid]; !live {
			delete(a.noTLS, pid)
			continue
		}
		s, err := a.tls.AttachLoaded(pid)
		if errors.Is(err, openssl.ErrNoTLS) {
			continue
		}
		delete(a.noTLS, pid)
		if err != nil {
			fmt.Fprintf(a.cfg.Out, "zerotrace: pid %d loaded a TLS library whose plaintext is not read: %v\n", pid, err)
			continue
		}
		fmt.Fprintf(a.cfg.Out, "zerotrace: pid %d loaded OpenSSL: TLS plaintext read at %s\n", pid, s)
	}
}

// childrenTLS reads the TLS plaintext of the children of traced processes
// that appeared since the last look, and takes the probes off those that
// are gone. Call with a.mu held.
func (a *attacher) childrenTLS() {
	if a.tlsChildren == nil {
		a.tlsChildren = map[int]bool{}
	}
	now := map[int]bool{}
	for _, pid := range a.sys.Children() {
		now[pid] = true
		if _, seen := a.tlsChildren[pid]; seen {
			continue
		}
		s, err := a.tls.Attach(pid)
		a.tlsChildren[pid] = err == nil
		switch {
		case err == nil:
			a.cfg.Log.Debug("TLS plaintext of a child read", "pid", pid, "sites", s.String())
		case !errors.Is(err, openssl.ErrNoTLS):
			a.cfg.Log.Debug("TLS plaintext of a child not read", "pid", pid, "err", err)
		}
	}
	for pid, attached := range a.tlsChildren {
		if now[pid] {
			continue
		}
		if attached {
			if err := a.tls.Detach(pid); err != nil {
				a.cfg.Log.Warn("detaching the TLS probes of an exited child", "pid", pid, "err", err)
			}
		}
		delete(a.tlsChildren, pid)
	}
}

// attachOne attaches a process found by the watcher.
func (a *attacher) attachOne(pid int) error {
	defer a.returnMemory() // also after a failure: planning and loading are done
	p, err := a.prepare(pid)
	if errors.Is(err, gobin.ErrNotGo) {
		if err := a.startKernelTracing(true); err != nil {
			return err
		}
		return a.attachKernel(pid)
	}
	if err != nil {
		return err
	}
	if err := a.startKernelTracing(false); err != nil {
		p.Target.Close()
		return err
	}
	if err := a.attachPlan(p); err != nil {
		p.Target.Close()
		return err
	}
	a.mu.Lock()
	a.plans = append(a.plans, p) // closed with the others at the end
	a.mu.Unlock()
	return nil
}

// followConnections follows the TCP connections of process pid: those it
// opens or accepts from now on, and those it already has (listed in the
// table as opened before the agent, their close reported like the others).
// A connection made between the look at /proc and the start of the
// following is missed: a window of a moment, at attach only. Call with
// a.mu held.
func (a *attacher) followConnections(pid int) error {
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
	if err := a.sys.AddConnections(pid, listening); err != nil {
		return err
	}
	adopted, err := a.sys.AdoptConnections(pid, socks, time.Now())
	for _, e := range adopted {
		a.corr.AddConnection(e)
	}
	return err
}

// pids lists the processes attached so far.
func (a *attacher) pids() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.traced...)
}

// close detaches everything (uprobes, then the syscall tracer) and
// releases the binaries; nothing is attached after it.
func (a *attacher) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.detached = true
	var errs []error
	for _, att := range a.attached {
		if err := att.Detach(); err != nil {
			errs = append(errs, fmt.Errorf("detaching %s: %w", att.Plan.Target, err))
		}
	}
	a.attached = nil
	if a.tls != nil {
		if err := a.tls.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detaching the TLS plaintext probes: %w", err))
		}
		a.tls = nil
	}
	if a.sys != nil {
		// Its counts outlive it, for the final report.
		if g, err := a.sys.GenAILosses(); err == nil {
			a.genaiFinal = g
		}
		if err := a.sys.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detaching the kernel-level tracing: %w", err))
		}
		a.sys = nil
	}
	for _, p := range a.plans {
		p.Target.Close()
	}
	a.plans = nil
	for _, lp := range a.live {
		if lp.pidfd >= 0 {
			unix.Close(lp.pidfd)
		}
	}
	a.live = nil
	return errors.Join(errs...)
}

// watchNew looks for processes that start and match sel, once a second,
// and attaches each new one once. seen holds the PIDs already handled;
// watchNew owns it from now on.
func (a *attacher) watchNew(ctx context.Context, sel Selector, seen map[int]bool) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	self := os.Getpid()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, pid := range Processes(self) {
			if seen[pid] {
				continue
			}
			why, ok := sel.Matches(pid)
			if !ok {
				continue
			}
			seen[pid] = true
			if ctx.Err() != nil {
				return
			}
			if err := a.attachOne(pid); err != nil {
				// One line; the agent goes on with what it traces.
				fmt.Fprintf(a.cfg.Out, "zerotrace: pid %d matched %s but cannot be traced: %v\n", pid, why, err)
			}
		}
	}
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

func (n *typeNamer) remove(pid uint32) {
	n.mu.Lock()
	delete(n.targets, pid)
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

// watchExits returns a channel closed when every process of pids has
// exited. It uses pidfds, which become readable when the process exits.
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
