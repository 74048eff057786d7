package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerotrace/zerotrace/export/servicemap"
)

type mapOptions struct {
	agent    string
	format   string
	watch    time.Duration
	pids     []int
	duration time.Duration
}

func newMapCommand() *cobra.Command {
	o := &mapOptions{}
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Print the service map of a running agent, or of a short run",
		Long: "Print who calls whom, with request and error counts, latency percentiles and bytes,\n" +
			"as a table or as JSON, DOT (Graphviz) or Mermaid. The map comes from a running\n" +
			"agent's local endpoint (zerotrace attach serves it on " + defaultListen + "), or, with\n" +
			"--pid and --duration, from an agent this command runs for that long.",
		Example: "  zerotrace map\n" +
			"  zerotrace map --watch 2s\n" +
			"  zerotrace map --format dot | dot -Tsvg > map.svg\n" +
			"  zerotrace map --pid 4242 --pid 4343 --duration 30s --format mermaid",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMap(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.agent, "agent", "http://"+defaultListen, "base URL of a running agent's endpoint")
	f.StringVar(&o.format, "format", "table", "output: "+strings.Join(servicemap.Formats, ", "))
	f.DurationVar(&o.watch, "watch", 0, "print the map again at this interval until interrupted")
	f.IntSliceVar(&o.pids, "pid", nil, "run an agent on these processes instead of asking a running one (with --duration)")
	f.DurationVar(&o.duration, "duration", 0, "how long the agent run with --pid traces before the map is printed")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(servicemap.Formats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func fetchMap(ctx context.Context, base string) (servicemap.Map, error) {
	var m servicemap.Map
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/map", nil)
	if err != nil {
		return m, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return m, fmt.Errorf("no agent answers at %s (start one with zerotrace attach, or use --pid and --duration): %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("%s answered %s", base, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return m, fmt.Errorf("reading the map from %s: %w", base, err)
	}
	return m, nil
}

func runMap(ctx context.Context, o *mapOptions, stdout, stderr io.Writer) error {
	if err := servicemap.Render(io.Discard, servicemap.Map{}, o.format); err != nil {
		return fail(stderr, err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	base := o.agent
	if len(o.pids) > 0 {
		if o.duration <= 0 {
			return fail(stderr, fmt.Errorf("--pid needs --duration: how long to trace before printing the map"))
		}
		agent, addr, err := startMapAgent(o.pids, stderr)
		if err != nil {
			return fail(stderr, err)
		}
		defer func() {
			_ = agent.Process.Signal(syscall.SIGINT)
			_ = agent.Wait()
		}()
		base = "http://" + addr
		select {
		case <-time.After(o.duration):
		case <-ctx.Done():
		}
	}
	for {
		m, err := fetchMap(ctx, base)
		if err != nil {
			return fail(stderr, err)
		}
		if o.watch > 0 {
			fmt.Fprint(stdout, "\033[H\033[2J") // clear the terminal
			fmt.Fprintf(stdout, "%s  (every %v, Ctrl-C to stop)\n\n", m.GeneratedAt.Format(time.TimeOnly), o.watch)
		}
		if err := servicemap.Render(stdout, m, o.format); err != nil {
			return fail(stderr, err)
		}
		if o.watch <= 0 {
			return nil
		}
		select {
		case <-time.After(o.watch):
		case <-ctx.Done():
			return nil
		}
	}
}

// startMapAgent runs "zerotrace attach" on pids with its endpoint on a free
// loopback port, and returns once it serves.
func startMapAgent(pids []int, stderr io.Writer) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	args := []string{"attach", "--output", "none", "--listen", "127.0.0.1:0"}
	for _, p := range pids {
		args = append(args, "--pid", strconv.Itoa(p))
	}
	cmd := exec.Command(self, args...)
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	const marker = "service map on http://"
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(stderr, line)
		if _, rest, ok := strings.Cut(line, marker); ok {
			addr, _, _ := strings.Cut(rest, "/")
			go func() { // keep relaying the agent's messages
				for sc.Scan() {
					fmt.Fprintln(stderr, sc.Text())
				}
			}()
			return cmd, addr, nil
		}
	}
	_ = cmd.Wait()
	return nil, "", fmt.Errorf("the agent stopped before serving its map")
}
