package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/export"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/registry"
)

// pipeline carries records from the ring buffer to the sinks: one goroutine
// reads a record, decodes it, lets the correlator make its spans and queues
// them for every sink; each sink then runs on its own goroutine. The
// correlator only computes and the sinks' queues never block (a full one
// drops and counts), so nothing between the ring buffer and the queues can
// stall the reader.
type pipeline struct {
	log    *slog.Logger
	reader *events.Reader
	corr   *correlate.Correlator
	fan    *export.Fanout

	// batch gathers the spans of one drain of the ring buffer, handed to
	// the sinks at once.
	batch []*model.Span

	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error // the reader's, once it stopped

	// background counts the background spans (model.Span.Background).
	background atomic.Uint64
}

// maxBatch bounds the spans handed to the sinks at once.
const maxBatch = 512

// shutdownTimeout is how long the sinks get to flush at the end.
const shutdownTimeout = 10 * time.Second

func newPipeline(shared *events.Shared, corr *correlate.Correlator, namer *typeNamer, fan *export.Fanout, log *slog.Logger) (*pipeline, error) {
	records, err := registry.Records()
	if err != nil {
		return nil, err
	}
	reader, err := events.NewReader(shared, records, events.NewClock(), namer.name, log)
	if err != nil {
		return nil, err
	}
	return &pipeline{log: log, reader: reader, corr: corr, fan: fan, batch: make([]*model.Span, 0, maxBatch)}, nil
}

// handle is the reader's handler: the spans an event completes join the
// batch for the sinks.
func (p *pipeline) handle(ev correlate.Event) {
	for _, s := range p.corr.HandleAll(ev) {
		if s.Background() {
			p.background.Add(1)
		}
		p.batch = append(p.batch, s)
	}
	if len(p.batch) >= maxBatch {
		p.flush()
	}
}

// flush hands the batch to every sink's queue. The sinks read the slice
// after this returns, so the next batch is a new one.
func (p *pipeline) flush() {
	if len(p.batch) == 0 {
		return
	}
	p.fan.SendBatch(p.batch)
	p.batch = make([]*model.Span, 0, maxBatch)
}

// drained runs whenever the ring buffer was read empty or a poll found
// nothing: what the correlator ends with no event, then the batch.
func (p *pipeline) drained() {
	p.corr.Tick(time.Now(), func(s *model.Span) { p.batch = append(p.batch, s) })
	p.flush()
}

func (p *pipeline) start() {
	p.fan.Start()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.err = p.reader.Run(ctx, p.handle, p.drained)
	}()
}

// stop drains what is left in the ring buffer, ends what the correlator
// still holds open, and lets the sinks flush. Call it once nothing is
// attached any more.
func (p *pipeline) stop() error {
	p.cancel()
	p.wg.Wait()
	p.corr.Flush(func(s *model.Span) { p.batch = append(p.batch, s) })
	p.flush()
	p.fan.Close(shutdownTimeout)
	if p.err != nil {
		return fmt.Errorf("ring buffer reader stopped: %w", p.err)
	}
	return nil
}
