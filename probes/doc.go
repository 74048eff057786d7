// Package probes finds what to trace in a process and attaches BPF programs
// to it. It is, with cmd, the only place that talks to the kernel through
// cilium/ebpf. Each instrumented library has its own package below, named
// after the library's import path (nethttp/server for net/http's server).
package probes
