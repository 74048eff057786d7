// Package goroutines makes goroutines inherit the trace context of the
// goroutine that starts them, so that a client call made from a goroutine a
// handler started, however deep, is a child of the handler's span.
package goroutines

import (
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is the runtime function every go statement goes through.
const Symbol = "runtime.newproc1"

// Probe is the goroutine-ancestry instrumentation.
var Probe = probes.Declare("goroutine ancestry", loadGoroutines, declare)

func declare(s *goroutinesSpecs) probes.Declaration {
	return probes.Declaration{
		Uprobes: []probes.Uprobe{{Symbol: Symbol, Entry: s.Newproc1Enter}},
		Reads: []probes.Read{
			{Field: offsets.GoroutineID, Offset: s.OffG_goid, Size: probes.Word},
			{Field: offsets.GoroutineParentID, Offset: s.OffG_parentGoid, Size: probes.Word},
		},
		// The inherited context is only read by spans that look for it in
		// a goroutine's parent (HTTP client calls, database calls), so it
		// is only worth a probe where one of them can happen.
		OnlyWith: offsets.GoroutineParentID,
	}
}
