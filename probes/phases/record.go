package phases

import (
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/probes/events"
)

// Record is the phases' ring-buffer record, struct phase_event
// (bpf/phases/record.h).
var Record = events.Record{
	Type:    uint8(phasesPhaseRecordEVENT_PHASE),
	Name:    "phase_event",
	MinSize: int(unsafe.Sizeof(phasesPhaseEvent{})),
	Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
		return span((*phasesPhaseEvent)(unsafe.Pointer(&raw[0])), d.Clock), nil
	},
}

func span(e *phasesPhaseEvent, clock *events.Clock) *model.Span {
	s := model.NewSpan()
	pattern, sym, ok := ids.name(e.Func)
	if !ok {
		pattern, sym = "unknown phase", "unknown phase"
	}
	c := &model.Code{Name: ShortName(pattern), Function: sym, Goroutine: e.Goid,
		Overflow: e.Info&uint8(phasesPhaseInfoPHASE_INFO_OVERFLOW) != 0}
	switch phasesPhaseEnd(e.End) {
	case phasesPhaseEndPHASE_END_UNWOUND:
		c.Ended = model.CodeUnwound
	case phasesPhaseEndPHASE_END_REQUEST:
		c.Ended = model.CodeRequestEnded
	}
	s.Code = c
	s.Kind = trace.SpanKindInternal
	s.Start, s.End = clock.Wall(e.StartNs), clock.Wall(e.Hdr.TsNs)
	s.PID = e.Hdr.Pid
	s.SetIDs(model.SpanIDs{TraceID: e.Ids.TraceId, SpanID: e.Ids.SpanId, Parent: e.Ids.ParentId})
	return s
}
