package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/zerotrace/zerotrace/correlate"
)

// ReaderStats counts what the reader saw and lost.
type ReaderStats struct {
	Records      atomic.Uint64 // records read from the ring buffer
	DecodeErrors atomic.Uint64 // records that could not be decoded
}

// Reader drains the shared ring buffer, decodes each record and hands the
// event to a handler on the reader's own goroutine.
//
// Probes write without waking the reader (see wakeup_flags in
// bpf/common/maps.h) unless the buffer fills up, so the reader polls every
// PollInterval. The handler must never block (the correlator only
// computes, and the exporters' queues drop and count when full), so a slow
// exporter can never stall the ring buffer and, through it, make the
// kernel drop records unseen. The event is only valid during the call.
type Reader struct {
	rd      *ringbuf.Reader
	records *Records
	dec     Decoder
	clock   *Clock
	log     *slog.Logger
	poll    time.Duration
	stats   ReaderStats
}

// PollInterval is how often the reader looks at the ring buffer when no
// wakeup came.
const PollInterval = 20 * time.Millisecond

// NewReader opens a reader on the shared ring buffer. records are the
// records it decodes, by type (see probes/registry). namer names the types
// behind itabs in records (error types, database drivers); it may be nil.
func NewReader(s *Shared, records *Records, clock *Clock, namer ErrTypeNamer, log *slog.Logger) (*Reader, error) {
	rd, err := ringbuf.NewReader(s.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("opening the ring buffer reader: %w", err)
	}
	return &Reader{
		rd:      rd,
		records: records,
		dec:     Decoder{Clock: clock, Namer: namer},
		clock:   clock,
		log:     log,
		poll:    PollInterval,
	}, nil
}

// Stats returns the reader's counters.
func (r *Reader) Stats() *ReaderStats { return &r.stats }

// Run reads until ctx is cancelled, then drains what is left in the ring
// buffer, handing every event to handle. Each time the buffer is empty it
// calls drained, if not nil, so that the handler can pass on what it
// gathered in one batch. Cancel ctx only after the probes are detached, so
// that nothing arrives after the final drain.
// clockResync is how often the reader re-measures the offset between the
// kernel's monotonic clock and the wall clock (15 vDSO clock reads).
const clockResync = time.Second

func (r *Reader) Run(ctx context.Context, handle func(correlate.Event), drained func()) error {
	defer r.rd.Close()

	var rec ringbuf.Record
	lastSync := time.Now()
	stopping := false
	for {
		if !stopping && ctx.Err() != nil {
			stopping = true
		}
		if stopping {
			// A deadline in the past makes ReadInto return everything that
			// is in the buffer and then ErrDeadlineExceeded.
			r.rd.SetDeadline(time.Unix(1, 0))
		} else {
			now := time.Now()
			// Re-measure the wall clock's offset here, before every read,
			// and not only when the buffer runs dry: under steady traffic
			// it never does, and a wall clock stepped since the last
			// measure (NTP, a VM's host) shifts every span by the step.
			if now.Sub(lastSync) > clockResync {
				r.clock.Sync()
				lastSync = now
			}
			r.rd.SetDeadline(now.Add(r.poll))
		}
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
			r.decode(rec.RawSample, handle)
			if drained != nil && r.rd.AvailableBytes() == 0 {
				drained()
			}
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if drained != nil {
				drained()
			}
			if stopping {
				return nil
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
	}
}

func (r *Reader) decode(raw []byte, handle func(correlate.Event)) {
	r.stats.Records.Add(1)
	ev, err := r.records.Decode(raw, &r.dec)
	if err != nil {
		if r.stats.DecodeErrors.Add(1) == 1 {
			r.log.Warn("undecodable ring buffer record (further ones are only counted)", "err", err)
		}
		return
	}
	handle(ev)
}
