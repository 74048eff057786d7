package testenv

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real programs the tests trace, built from the Go module proxy at the
// versions pinned under tests/tools by scripts/build-program.sh (Jaeger by
// scripts/build-jaeger.sh): the names BuildProgram takes, which are also
// their file names in the PrebuiltEnv directory.
const (
	Caddy         = "caddy"          // github.com/caddyserver/caddy/v2 v2.11.9, with DWARF
	CaddyStripped = "caddy-stripped" // the same, -ldflags='-s -w'
	PocketBase    = "pocketbase"     // github.com/pocketbase/pocketbase v0.36.8 (examples/base)
	NATSServer    = "nats-server"    // github.com/nats-io/nats-server/v2 v2.15.3
	Jaeger        = "jaeger"         // github.com/jaegertracing/jaeger v1.76.0 (tests/tools)
)

// BuildProgram returns the binary of the real program name (Caddy, ...),
// building it when its cached copy in .cache/bin is missing or stale: one
// to four minutes on a cold Go build cache, which scripts/setup.sh spends
// ahead of the tests. With PrebuiltEnv set it returns the prebuilt one.
func BuildProgram(t testing.TB, name string) string {
	t.Helper()
	if pre, ok := prebuiltDir(); ok {
		return prebuiltBinary(t, pre, name, "")
	}
	root := RepoRoot(t)
	path, err := memoBuild("program "+name, func() (string, error) {
		start := time.Now()
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "build-program.sh"), name)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return "", &buildError{what: "scripts/build-program.sh " + name, err: err, out: stderr.String()}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("%s built in %v", name, d.Round(time.Second))
		}
		return strings.TrimSpace(stdout.String()), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

type buildError struct {
	what string
	err  error
	out  string
}

func (e *buildError) Error() string { return e.what + ": " + e.err.Error() + "\n" + e.out }

// JaegerConfig is a Jaeger v2 configuration with in-memory storage on three
// ports of 127.0.0.1: the query API's HTTP and gRPC ports and the OTLP/HTTP
// receiver's (none of them the fixed ports other tests export to).
func JaegerConfig(query, grpc, otlp int) string {
	return fmt.Sprintf(jaegerConfig, query, grpc, otlp)
}

const jaegerConfig = `extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 1000
  jaeger_query:
    storage:
      traces: memory_store
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
`
