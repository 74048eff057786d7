// Package probes finds what to trace in a process and attaches BPF programs
// to it. It is, with cmd, the only place that talks to the kernel through
// cilium/ebpf. Each instrumented library has its own package below, named
// after the library's import path (nethttp/server for net/http's server),
// which declares its probe as data (Declare); this package's generic loader
// plans it for a target (PlanTarget), loads and attaches it. The list of
// probes is in probes/registry.
package probes
