package export

import (
	"context"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// Filter returns a sink that passes on to sink only the spans keep accepts.
// The others are handled as if exported: the fan-out releases them with the
// batch, and counts them as delivered to this sink.
func Filter(sink Sink, keep func(*model.Span) bool) Sink {
	return &filtered{Sink: sink, keep: keep}
}

type filtered struct {
	Sink
	keep func(*model.Span) bool
	// batch is reused: Export is called from the sink's one goroutine.
	batch []*model.Span
}

func (f *filtered) Export(ctx context.Context, spans []*model.Span) error {
	f.batch = f.batch[:0]
	for _, s := range spans {
		if f.keep(s) {
			f.batch = append(f.batch, s)
		}
	}
	if len(f.batch) == 0 {
		return nil
	}
	err := f.Sink.Export(ctx, f.batch)
	clear(f.batch) // the spans go back to their pool
	return err
}
