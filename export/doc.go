// Package export delivers finished spans: over OTLP to a collector or
// tracing backend, and as text or JSON lines for people and scripts.
//
// A Fanout gives every sink its own bounded queue, so a sink that cannot
// keep up (an unreachable collector) drops and counts its own spans without
// slowing the others or the correlator in front of them.
package export
