package correlate

import (
	crand "crypto/rand"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/correlate/redact"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// Stats counts what the correlator did, for the agent's loss report.
type Stats struct {
	Events         atomic.Uint64 // events received
	Spans          atomic.Uint64 // spans emitted
	UnknownProcess atomic.Uint64 // events from a PID that was never registered, dropped
	// Kernel-level tracing (SockData): requests, queries and commands
	// never answered before their descriptor closed or their queue
	// overflowed, and data that started like a protocol but did not parse.
	// Neither produces a span.
	KernelUnanswered atomic.Uint64
	KernelMalformed  atomic.Uint64
	// KernelStreamsFull counts records dropped because maxStreams sockets
	// were being followed already (a loss).
	KernelStreamsFull atomic.Uint64
}

// Correlator builds spans from events. Feed it from one goroutine
// (HandleAll, Flush); Register may be called from any goroutine.
type Correlator struct {
	log   *slog.Logger
	mu    sync.RWMutex
	procs map[uint32]*model.Process
	rng   *rand.ChaCha8
	// kernel pairs the requests and responses of processes traced from
	// the kernel; only Run's goroutine touches it.
	kernel *kernelTracer
	conns  *ConnTable
	// goCalls joins Go clients' model calls to their bytes.
	goCalls *goCalls
	// sem names, attributes and redacts spans, remembering what repeats.
	sem   *semconv.Mapper
	stats Stats
	one   [1]*model.Span // HandleAll's answer for one span, reused
	// genai configures model calls: what the parsers keep of them, and
	// the provider and cost every GenAI span gets before semconv.
	genai *genai.Config
	// exited are the processes Unregister was told of, forgotten at the
	// next Tick (under mu).
	exited []uint32
}

// New returns a Correlator that knows no process yet. Every span it builds
// goes through red before it is returned; a nil red redacts with the
// built-in defaults.
func New(log *slog.Logger, red *redact.Redactor) *Correlator {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails on Linux
	c := &Correlator{
		log:   log,
		procs: make(map[uint32]*model.Process),
		rng:   rand.NewChaCha8(seed),
		sem:   semconv.NewMapper(red),
	}
	c.kernel = newKernelTracer(&c.stats, c)
	c.conns = newConnTable()
	c.goCalls = newGoCalls()
	c.kernel.recognised = c.conns.recognised
	return c
}

// SetGenAI configures model calls (gen_ai in the agent's configuration):
// which requests are calls, what is kept of them, their providers and
// prices. Call it before the first event; nil is the defaults.
func (c *Correlator) SetGenAI(cfg *genai.Config) {
	c.genai = cfg
	c.kernel.genai = cfg
	c.goCalls.cfg = cfg
}

// GenAI is the configuration of model calls, for capture paths that read
// bodies outside the kernel tracer (nil: the defaults).
func (c *Correlator) GenAI() *genai.Config { return c.genai }

// Register makes events from p.PID attributable to p.
func (c *Correlator) Register(p *model.Process) {
	c.mu.Lock()
	c.procs[p.PID] = p
	c.mu.Unlock()
}

// Unregister forgets process pid, which exited, at the next Tick: what
// is still open of its model calls ends there, then it is marked gone, so
// that sinks drop what they keep for it, and later events from it count
// as from an unknown process. Call it once its last records were read;
// safe from any goroutine.
func (c *Correlator) Unregister(pid uint32) {
	c.mu.Lock()
	c.exited = append(c.exited, pid)
	c.mu.Unlock()
}

// Tick does what is due with no event to trigger it, giving each span it
// ends to yield: it forgets the processes Unregister was told of, ending
// their open model calls first (a streamed call cut by the exit would
// otherwise wait for the idle sweep), and ends the model calls no byte came
// for in a long while (the sweep runs on event times too, but an idle
// agent has none). Call it from HandleAll's goroutine, between events.
func (c *Correlator) Tick(now time.Time, yield func(*model.Span)) {
	c.mu.Lock()
	exited := c.exited
	c.exited = nil
	c.mu.Unlock()
	for _, pid := range exited {
		c.mu.RLock()
		p := c.procs[pid]
		c.mu.RUnlock()
		if p == nil {
			continue
		}
		for _, s := range c.goCalls.flush(pid, false) {
			c.finish(s, p)
			c.stats.Spans.Add(1)
			yield(s)
		}
		c.mu.Lock()
		delete(c.procs, pid)
		c.mu.Unlock()
		p.MarkGone()
	}
	c.yieldAll(c.goCalls.maybeSweepAt(now), yield)
}

// Processes is how many processes the correlator knows now.
func (c *Correlator) Processes() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.procs)
}

// Stats returns the correlator's counters.
func (c *Correlator) Stats() *Stats { return &c.stats }

// Flush ends, when the events stop (the agent detaches), what is still
// open: responses still being written were answered, and end with their
// last write seen. Each span goes to yield.
func (c *Correlator) Flush(yield func(*model.Span)) {
	c.yieldAll(c.goCalls.flush(0, true), yield)
	c.kernel.flush(func(pid uint32, s *model.Span) {
		c.mu.RLock()
		p := c.procs[pid]
		c.mu.RUnlock()
		if p != nil {
			c.finish(s, p)
			c.stats.Spans.Add(1)
			yield(s)
		}
	})
}

// Handle builds the span for one event, or returns nil when the event
// produces none. For events that may complete several spans, use
// HandleAll.
func (c *Correlator) Handle(ev Event) *model.Span {
	if spans := c.HandleAll(ev); len(spans) > 0 {
		return spans[0]
	}
	return nil
}

// HandleAll builds the spans one event completes: none, one, or (a read
// that answers several pipelined requests) more. The slice is reused by
// the next call. Call it from one goroutine.
func (c *Correlator) HandleAll(ev Event) []*model.Span {
	c.stats.Events.Add(1)
	spans := c.handle(ev)
	c.stats.Spans.Add(uint64(len(spans)))
	return spans
}

func (c *Correlator) handle(ev Event) []*model.Span {
	if t, ok := ev.(*TaskEvent); ok {
		return c.task(t)
	}
	c.mu.RLock()
	p := c.procs[ev.ProcessID()]
	c.mu.RUnlock()
	if p == nil {
		if c.stats.UnknownProcess.Add(1) == 1 {
			c.log.Warn("dropping events from an unregistered process", "pid", ev.ProcessID())
		}
		return nil
	}
	switch e := ev.(type) {
	case *model.Span:
		c.finish(e, p)
		c.one[0] = e
		return c.one[:]
	case *ConnEvent:
		c.conns.add(e, p)
	case *SockData:
		spans := c.kernel.handle(e)
		for _, s := range spans {
			c.finish(s, p)
		}
		return spans
	case *GoModelCall:
		spans := c.goCalls.call(e)
		for _, s := range spans {
			c.finishGo(s)
		}
		return spans
	case *GoH2Stream:
		spans := c.goCalls.h2stream(e)
		for _, s := range spans {
			c.finishGo(s)
		}
		return spans
	case *GoBody:
		spans := c.goCalls.body(e)
		for _, s := range spans {
			c.finishGo(s)
		}
		return spans
	}
	return nil
}

// yieldAll finishes the spans of Go model calls ended outside an event's
// handling and hands them to yield.
func (c *Correlator) yieldAll(spans []*model.Span, yield func(*model.Span)) {
	for _, s := range spans {
		if c.finishGo(s) {
			c.stats.Spans.Add(1)
			yield(s)
		}
	}
}

// finishGo finishes a Go model call's span, which may have been held
// since another event of its process; false when the process is gone.
func (c *Correlator) finishGo(s *model.Span) bool {
	c.mu.RLock()
	p := c.procs[s.PID]
	c.mu.RUnlock()
	if p == nil {
		p = s.Process
	}
	if p == nil {
		return false
	}
	c.finish(s, p)
	return true
}

// finish gives s its process, makes sure it has IDs, and redacts it and
// derives its name and attributes (semconv).
func (c *Correlator) finish(s *model.Span, p *model.Process) {
	s.Process = p
	if !s.TraceID.IsValid() || !s.SpanID.IsValid() {
		// The probes always choose IDs; this only guards against a
		// record from a probe that did not.
		c.newIDs(s)
	}
	if s.GenAI != nil {
		c.genai.Settle(s)
	}
	c.sem.Apply(s)
}

// task follows a fork or an exit of a process traced from the kernel. A
// child is its parent's service, under its own PID; an exit drops what the
// kernel tracer held for the process, since its descriptors closed without
// close() calls, and forgets a child. It returns the spans of responses the
// process was writing, which end with it.
func (c *Correlator) task(t *TaskEvent) []*model.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.Exit {
		if parent := c.procs[t.Parent]; parent != nil {
			child := model.NewProcess(t.PID, parent.ExecutablePath, parent.ServiceName, parent.RuntimeVersion)
			child.Parent = t.Parent
			c.procs[t.PID] = child
		}
		return nil
	}
	spans := c.kernel.forget(t.PID)
	p := c.procs[t.PID]
	if p != nil {
		for _, s := range spans {
			c.finish(s, p)
		}
	} else {
		spans = nil
	}
	if p != nil && p.Parent != 0 {
		delete(c.procs, t.PID)
		p.MarkGone()
	}
	return spans
}

// AddConnection records a connection event that did not come from the
// probes: one found in /proc at attach time (ConnEvent.Before). Safe to
// call from any goroutine.
func (c *Correlator) AddConnection(e *ConnEvent) {
	c.mu.RLock()
	p := c.procs[e.PID]
	c.mu.RUnlock()
	if p != nil {
		c.conns.add(e, p)
	}
}

// Connections is the table of the traced processes' TCP connections.
func (c *Correlator) Connections() *ConnTable { return c.conns }

func (c *Correlator) newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:], c.rng.Uint64())
	}
	return id
}

func (c *Correlator) newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.LittleEndian.PutUint64(id[:8], c.rng.Uint64())
		binary.LittleEndian.PutUint64(id[8:], c.rng.Uint64())
	}
	return id
}

func (c *Correlator) newIDs(s *model.Span) {
	s.ParentSpanID = trace.SpanID{}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], c.rng.Uint64())
	copy(s.TraceID[:8], b[:])
	binary.LittleEndian.PutUint64(b[:], c.rng.Uint64())
	copy(s.TraceID[8:], b[:])
	for !s.SpanID.IsValid() {
		binary.LittleEndian.PutUint64(s.SpanID[:], c.rng.Uint64())
	}
	if !s.TraceID.IsValid() {
		s.TraceID[0] = 1
	}
}
