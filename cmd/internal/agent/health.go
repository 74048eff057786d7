package agent

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"

	zmetrics "github.com/zerotrace/zerotrace/export/metrics"
)

// heapLive is the runtime metric of the heap bytes found live by the last
// garbage collection: steadier than the heap in use, which holds garbage
// until the next one.
const heapLive = "/gc/heap/live:bytes"

// gauges reports the agent's own health on /metrics, so that its cost and
// any growth (goroutines, memory, processes held) can be watched like the
// services it traces.
func (a *Agent) gauges() []zmetrics.Gauge {
	sample := []metrics.Sample{{Name: heapLive}}
	metrics.Read(sample)
	var heap float64
	if sample[0].Value.Kind() == metrics.KindUint64 {
		heap = float64(sample[0].Value.Uint64())
	}
	return []zmetrics.Gauge{
		{Name: "zerotrace_agent_goroutines", Help: "Goroutines of the agent.", Value: float64(runtime.NumGoroutine())},
		{Name: "zerotrace_agent_heap_live_bytes", Help: "Bytes of the agent's heap found live by the last garbage collection.", Value: heap},
		{Name: "zerotrace_agent_resident_bytes", Help: "Resident memory of the agent.", Value: float64(residentBytes())},
		{Name: "zerotrace_traced_processes", Help: "Processes the agent traces now, forked children included.", Value: float64(a.corr.Processes())},
		{Name: "zerotrace_kernel_genai_body_bytes_not_copied", Help: "Bytes of model calls' bodies the kernel-level tracing did not copy (past its budget, or the middle of a long read or write), since the start.", Value: float64(a.attacher.genAILosses().Bytes)},
	}
}

// residentBytes reads the agent's resident set size, 0 when unknown.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
