// Package correlate turns decoded probe events into spans.
//
// It is plain Go with no kernel dependency: probes decode ring-buffer records
// into the event types declared here, the Correlator builds spans from them,
// and exporters read the spans. Everything here is testable without root.
package correlate
