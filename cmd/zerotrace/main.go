// Command zerotrace traces running Go services with eBPF, with no code
// change and no restart, and exports OpenTelemetry spans.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/zerotrace/zerotrace/correlate/model"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=…"; without it
// the VCS revision recorded by the go command is used.
var version = ""

func agentVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

// exitError carries the exit status for main; its message was already shown.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "zerotrace",
		Short: "Zero-instrumentation tracing of running services with eBPF",
		Long: "zerotrace attaches eBPF probes to running processes and turns what they do into\n" +
			"OpenTelemetry traces, with no code change and no restart.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAttachCommand(), newMapCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of zerotrace",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "zerotrace %s (%s, %s/%s)\n", agentVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

// gcPercent is the agent's GOGC unless the environment sets one. Its live
// heap is small (a few MiB of queues and caches) and every span allocates,
// so at the default of 100 the collector runs every few thousand spans and
// costs about a microsecond per span, CPU taken from the traced service on
// a small machine; 400 trades a few tens of MiB for most of that.
const gcPercent = 400

func main() {
	// No heap profiling: the runtime samples an allocation per 512 KiB by
	// default and keeps a record per distinct stack for good, about 1.4 MB
	// after parsing a large binary, a twentieth of the agent's memory.
	runtime.MemProfileRate = 0
	// No transparent huge pages for the agent: where the kernel gives them
	// to every anonymous mapping (enabled=always, Debian's default), each
	// touched 2 MB of the Go heap and of the zero-filled data becomes
	// resident whole, about 4 MB more for an agent whose live heap is 1 MB.
	// The agent's memory is small and its access pattern sparse: huge
	// pages buy it nothing. Only this process is concerned.
	_ = unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	model.Version = agentVersion()
	err := newRootCommand().Execute()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "zerotrace:", err)
	os.Exit(1)
}
