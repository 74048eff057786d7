package metrics

import (
	"fmt"
	"strings"
)

// Gauge is one value the agent reports about itself now.
type Gauge struct {
	Name  string // a metric name, such as zerotrace_agent_goroutines
	Help  string
	Value float64
}

// SetGauges makes Write serve the gauges f returns, read afresh at each
// scrape: the agent's own health (goroutines, memory, processes held).
func (r *Registry) SetGauges(f func() []Gauge) { r.gauges.Store(&f) }

func (r *Registry) writeGauges(b *strings.Builder) {
	f := r.gauges.Load()
	if f == nil {
		return
	}
	for _, g := range (*f)() {
		fmt.Fprintf(b, "# TYPE %s gauge\n# HELP %s %s\n%s %s\n", g.Name, g.Name, g.Help, g.Name, formatFloat(g.Value))
	}
}
