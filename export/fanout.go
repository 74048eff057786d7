package export

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// Sink receives batches of finished spans.
type Sink interface {
	// Name identifies the sink in logs and statistics.
	Name() string
	// Export delivers a batch. It may block; the Fanout calls it from the
	// sink's own goroutine.
	Export(ctx context.Context, spans []*model.Span) error
	// Shutdown flushes what the sink still holds and releases it.
	Shutdown(ctx context.Context) error
}

// SinkStats counts what happened to the spans given to one sink.
type SinkStats struct {
	Name      string
	Delivered atomic.Uint64 // spans the sink accepted
	Dropped   atomic.Uint64 // spans dropped because the sink's queue was full
	Failed    atomic.Uint64 // spans the sink reported it could not deliver
}

type sinkQueue struct {
	sink   Sink
	ch     chan []*model.Span
	queued atomic.Int64 // spans in ch
	limit  int64
	stats  *SinkStats
}

// Fanout copies every span to each sink through a bounded queue. Spans move
// in batches: each sink's goroutine wakes once per batch, not once per span,
// which at tens of thousands of spans a second is most of what a sink
// would otherwise cost.
type Fanout struct {
	log    *slog.Logger
	queues []*sinkQueue
	wg     sync.WaitGroup
}

// maxBatch bounds how many spans a sink gets in one Export call.
const maxBatch = 512

// NewFanout builds a fan-out with a queue of queueLen spans per sink.
func NewFanout(log *slog.Logger, queueLen int, sinks ...Sink) *Fanout {
	f := &Fanout{log: log}
	for _, s := range sinks {
		f.queues = append(f.queues, &sinkQueue{
			sink: s,
			// Room for queueLen batches of one span (a quiet service), up
			// to a bound on the channel itself; queued bounds the spans.
			ch:    make(chan []*model.Span, min(max(queueLen, 1), 4096)),
			limit: int64(queueLen),
			stats: &SinkStats{Name: s.Name()},
		})
	}
	return f
}

// Stats returns one entry per sink.
func (f *Fanout) Stats() []*SinkStats {
	out := make([]*SinkStats, len(f.queues))
	for i, q := range f.queues {
		out[i] = q.stats
	}
	return out
}

// Start starts one goroutine per sink, feeding it from its queue.
func (f *Fanout) Start() {
	for _, q := range f.queues {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.drain(q)
		}()
	}
}

// Send queues s for every sink; see SendBatch.
func (f *Fanout) Send(s *model.Span) { f.SendBatch([]*model.Span{s}) }

// SendBatch queues the spans for every sink, which all read the same slice:
// the caller must not change it afterwards. It never blocks: a sink whose
// queue is full loses the batch, and the loss is counted.
//
// Each sink holds each span until its export returned (model.Span.Hold
// and Release), so that the span's memory is reused once every sink is
// done with it: a sink must not keep the span, its exchange or its
// attribute slice after Export returns (strings may be kept).
func (f *Fanout) SendBatch(spans []*model.Span) {
	if len(spans) == 0 {
		return
	}
	for _, s := range spans {
		s.Hold(int32(len(f.queues)))
	}
	n := int64(len(spans))
	for _, q := range f.queues {
		if q.queued.Add(n) <= q.limit {
			select {
			case q.ch <- spans:
				continue
			default:
			}
		}
		q.queued.Add(-n)
		for _, s := range spans {
			s.Release()
		}
		if q.stats.Dropped.Add(uint64(n)) == uint64(n) {
			f.log.Warn("span queue full: dropping spans", "sink", q.stats.Name)
		}
	}
}

// Close lets every sink finish its queue, then shuts the sinks down,
// giving them until shutdownTimeout to flush. Send must not be called
// after it.
func (f *Fanout) Close(shutdownTimeout time.Duration) {
	for _, q := range f.queues {
		close(q.ch)
	}
	f.wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, q := range f.queues {
		if err := q.sink.Shutdown(ctx); err != nil {
			f.log.Error("flushing spans at shutdown", "sink", q.stats.Name, "err", err)
		}
	}
}

// Run distributes spans from in until it is closed, then closes the
// fan-out: Start, Send for each span, Close.
func (f *Fanout) Run(in <-chan *model.Span, shutdownTimeout time.Duration) {
	f.Start()
	for s := range in {
		f.Send(s)
	}
	f.Close(shutdownTimeout)
}

// drain feeds one sink: a batch at a time, or several queued batches
// together up to maxBatch spans.
func (f *Fanout) drain(q *sinkQueue) {
	var batch []*model.Span
	for first := range q.ch {
		batch = append(batch[:0], first...)
	more:
		for len(batch) < maxBatch {
			select {
			case b, ok := <-q.ch:
				if !ok {
					break more
				}
				batch = append(batch, b...)
			default:
				break more
			}
		}
		q.queued.Add(-int64(len(batch)))
		for start := 0; start < len(batch); start += maxBatch {
			part := batch[start:min(start+maxBatch, len(batch))]
			err := q.sink.Export(context.Background(), part)
			for _, s := range part {
				s.Release()
			}
			if err != nil {
				q.stats.Failed.Add(uint64(len(part)))
				f.log.Debug("export failed", "sink", q.stats.Name, "err", err)
				continue
			}
			q.stats.Delivered.Add(uint64(len(part)))
		}
		clear(batch)
	}
}
