package agent

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/zerotrace/zerotrace/export"
	"github.com/zerotrace/zerotrace/export/metrics"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/inject"
	"github.com/zerotrace/zerotrace/probes/phases"
	"github.com/zerotrace/zerotrace/probes/syscalls"
)

// reporter tells the user what was traced and, above all, what was lost,
// wherever in the pipeline that happened.
type reporter struct {
	log      *slog.Logger
	shared   *events.Shared
	pipe     *pipeline
	otlp     *export.OTLP
	inject   inject.Mode
	lastLoss string
	lastInj  inject.Counts
	// dropBackground: background spans are not exported (they are not a
	// loss: the user asked).
	dropBackground bool
	// genai reads what the kernel did not copy of model calls' bodies
	// (zero while nothing is traced from the kernel).
	genai func() syscalls.GenAILosses
}

// reportInjection logs the injection counts when they changed.
func (r *reporter) reportInjection(final bool) {
	if r.inject != inject.SockMsg && r.inject != inject.WriteUser {
		return
	}
	c, err := inject.ReadCounts(r.shared)
	if err != nil || (c == r.lastInj && !final) {
		return
	}
	r.lastInj = c
	r.log.Info("context injection", "mode", string(r.inject), "counts", c.String())
}

// losses returns every loss counter, zero or not, in a fixed order: what
// /metrics serves as zerotrace_lost_total.
func (r *reporter) losses() []metrics.Count {
	var out []metrics.Count
	add := func(name string, n uint64) { out = append(out, metrics.Count{Name: name, Value: n}) }
	var goCut uint64
	if kc, err := r.shared.Counters(); err == nil {
		add("kernel_ringbuf_full", kc[events.CounterRingbufFull])
		add("kernel_inflight_full", kc[events.CounterInflightFull])
		add("kernel_read_failed", kc[events.CounterReadFailed])
		add("kernel_traced_processes_full", kc[events.CounterTracedFull])
		// Writes and reads of Go model calls (net/http client probe) not
		// copied whole.
		goCut = kc[events.CounterGenAIUncopied]
		add("kernel_tls_no_socket", kc[events.CounterTLSNoSocket])
	}
	if r.genai != nil || goCut > 0 {
		// Reads and writes of model calls' bodies the kernel did not
		// copy whole (past the copy budget, or the middle of a long
		// one; the bytes are a gauge of their own, health.go), on the
		// kernel path and in Go programs; their spans say
		// zerotrace.gen_ai.body.truncated.
		cut := goCut
		if r.genai != nil {
			cut += r.genai().Segments
		}
		add("kernel_genai_body_cut", cut)
	}
	add("decode_errors", r.pipe.reader.Stats().DecodeErrors.Load())
	add("unknown_process", r.pipe.corr.Stats().UnknownProcess.Load())
	add("connection_table_full", r.pipe.corr.Connections().Dropped.Load())
	add("connection_bytes_failed", r.pipe.corr.Connections().LiveFailed.Load())
	add("kernel_streams_full", r.pipe.corr.Stats().KernelStreamsFull.Load())
	overflow, _ := phases.Lost()
	add("phase_nesting_overflow", overflow)
	for _, s := range r.pipe.fan.Stats() {
		add(s.Name+"_queue_full", s.Dropped.Load())
		add(s.Name+"_failed", s.Failed.Load())
	}
	if r.otlp != nil {
		add("otlp_export_failed", r.otlp.Failed())
	}
	return out
}

// loss describes every non-zero loss counter, "" when nothing was lost.
func (r *reporter) loss() string {
	var parts []string
	for _, c := range r.losses() {
		if c.Value > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", c.Name, c.Value))
		}
	}
	return strings.Join(parts, " ")
}

// reportLoss logs losses when they changed since the last report; final
// also prints the totals.
func (r *reporter) reportLoss(final bool) {
	loss := r.loss()
	if loss != "" && loss != r.lastLoss {
		r.log.Warn("events lost", "counts", loss)
	}
	r.lastLoss = loss
	r.reportInjection(final)
	if !final {
		return
	}
	// Records are requests, queries and connection events; not every
	// one makes a span.
	line := fmt.Sprintf("zerotrace: %d spans from %d kernel records", r.pipe.corr.Stats().Spans.Load(), r.pipe.reader.Stats().Records.Load())
	if r.otlp != nil {
		line += fmt.Sprintf(", %d exported over OTLP", r.otlp.Exported())
	}
	if n := r.pipe.background.Load(); r.dropBackground && n > 0 {
		line += fmt.Sprintf(", %d background spans not exported (spans.drop_background)", n)
	}
	if kc, err := r.shared.Counters(); err == nil && kc[events.CounterNoEntry] > 0 {
		// Requests that began before the entry probe was in, or ended
		// after it was out: not traced, by design, and not a loss.
		r.log.Debug("returns without an entry (attach and detach windows)", "count", kc[events.CounterNoEntry])
	}
	if _, n := phases.Lost(); n > 0 {
		r.log.Debug("phase returns without an entry (calls begun before attach)", "count", n)
	}
	if loss == "" {
		line += ", nothing lost"
	} else {
		line += "; lost: " + loss
	}
	// Not losses: traffic the kernel-level HTTP tracing saw but could not
	// turn into spans, by design.
	if cs := r.pipe.corr.Stats(); cs.KernelUnanswered.Load()+cs.KernelMalformed.Load() > 0 {
		line += fmt.Sprintf("; no span for kernel_http_unanswered=%d kernel_http_malformed=%d",
			cs.KernelUnanswered.Load(), cs.KernelMalformed.Load())
	}
	r.log.Info(strings.TrimPrefix(line, "zerotrace: "))
}
