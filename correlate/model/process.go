package model

import (
	"os"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
)

// Process describes a traced process. Its resource attributes travel with
// every span the process produces.
type Process struct {
	PID         uint32
	ServiceName string
	// ServiceSource says where ServiceName came from (the agent's
	// configuration, the process's environment, a flag, the executable),
	// "" when not told.
	ServiceSource  string
	ExecutableName string
	ExecutablePath string
	RuntimeVersion string // the Go version the binary was built with, "" for other programs
	HostName       string
	// Parent is the traced process that forked this one, 0 when it was
	// selected itself.
	Parent uint32

	resource []attribute.KeyValue
	gone     atomic.Bool
}

// SDK identification, reported as telemetry.sdk.* on every resource.
const (
	SDKName     = "zerotrace"
	SDKLanguage = "go"
)

// Version is the agent's version, set at build time by cmd.
var Version = "dev"

// AddResource adds resource attributes to the process's, before the first
// of its spans is made: keys it has already are left as they are.
func (p *Process) AddResource(kvs ...attribute.KeyValue) {
	for _, kv := range kvs {
		known := false
		for _, have := range p.resource {
			if have.Key == kv.Key {
				known = true
				break
			}
		}
		if !known {
			p.resource = append(p.resource, kv)
		}
	}
}

// NewProcess fills in a Process and computes its resource attributes once.
// An empty serviceName defaults to the executable name.
func NewProcess(pid uint32, exePath, serviceName, runtimeVersion string) *Process {
	name := exePath
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			name = name[i+1:]
			break
		}
	}
	if serviceName == "" {
		serviceName = name
	}
	host, _ := os.Hostname()
	p := &Process{
		PID:            pid,
		ServiceName:    serviceName,
		ExecutableName: name,
		ExecutablePath: exePath,
		RuntimeVersion: runtimeVersion,
		HostName:       host,
	}
	p.resource = []attribute.KeyValue{
		attribute.String("service.name", p.ServiceName),
		attribute.Int("process.pid", int(pid)),
		attribute.String("process.executable.name", p.ExecutableName),
		attribute.String("process.executable.path", p.ExecutablePath),
	}
	if runtimeVersion != "" {
		// Only Go programs are recognised; others are traced from the
		// kernel, whatever their language.
		p.resource = append(p.resource,
			attribute.String("process.runtime.name", "go"),
			attribute.String("process.runtime.version", p.RuntimeVersion))
	}
	p.resource = append(p.resource,
		attribute.String("host.name", p.HostName),
		attribute.String("telemetry.sdk.name", SDKName),
		attribute.String("telemetry.sdk.language", SDKLanguage),
		attribute.String("telemetry.sdk.version", Version),
	)
	return p
}

// Resource returns the process's resource attributes. The slice is shared:
// callers must not modify it.
func (p *Process) Resource() []attribute.KeyValue { return p.resource }

// String names the process for logs.
func (p *Process) String() string {
	return p.ExecutableName + "[" + strconv.Itoa(int(p.PID)) + "]"
}

// MarkGone records that the process exited and the correlator forgot it.
// Spans already made keep pointing at it; sinks that keep state per process
// drop theirs when they see it gone.
func (p *Process) MarkGone() { p.gone.Store(true) }

// Gone tells whether the process exited and was forgotten.
func (p *Process) Gone() bool { return p.gone.Load() }
