package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zerotrace/zerotrace/scripts/vmtest/internal/vmproto"
)

// matrixReport is the -out JSON document.
type matrixReport struct {
	Payload      string          `json:"payload"`
	Started      string          `json:"started"`
	TotalSeconds float64         `json:"total_seconds"`
	Parallel     int             `json:"parallel"`
	SMP          int             `json:"smp"`
	MemMB        int             `json:"mem_mb"`
	Artifacts    string          `json:"artifacts"`
	Failed       []string        `json:"failed"`
	Kernels      []*kernelResult `json:"kernels"`
}

// kernelResult is one row of the matrix.
type kernelResult struct {
	Name           string  `json:"name"`
	OK             bool    `json:"ok"`
	Package        string  `json:"package,omitempty"`
	PackageVersion string  `json:"package_version,omitempty"`
	KernelRelease  string  `json:"kernel_release,omitempty"`
	InitramfsMB    float64 `json:"initramfs_mb,omitempty"`
	// ExitStatus is the payload's exit status; null when it never finished
	// (or the guest never said).
	ExitStatus *int   `json:"exit_status"`
	Signal     string `json:"signal,omitempty"`
	TimedOut   bool   `json:"timed_out"`
	// BootSeconds is host wall time from QEMU's start to init's first line.
	BootSeconds float64 `json:"boot_seconds,omitempty"`
	// GuestUptimeAtInit is the guest kernel's own uptime when init started.
	GuestUptimeAtInit float64 `json:"guest_uptime_at_init_seconds,omitempty"`
	PayloadSeconds    float64 `json:"payload_seconds"`
	// WallSeconds is the whole run: QEMU start to exit, or the host run.
	WallSeconds float64 `json:"wall_seconds"`
	// Summary is the payload's summary.json, verbatim when it is JSON.
	Summary json.RawMessage `json:"summary"`
	// Files are the payload's returned files, relative to FilesDir.
	Files      []string          `json:"files"`
	FilesDir   string            `json:"files_dir,omitempty"`
	OutputLog  string            `json:"output_log,omitempty"`
	ConsoleLog string            `json:"console_log,omitempty"`
	Modules    map[string]string `json:"modules,omitempty"`
	Errors     []string          `json:"errors,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
}

func (r *kernelResult) fail(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	r.OK = false
}

func (r *kernelResult) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *kernelResult) status() string {
	if r.OK {
		return "ok"
	}
	return "FAIL"
}

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*100) / 100 }

// collect decodes what the init program sent back and decides the verdict.
// Every way of not getting a clean, complete answer is a failure: only an
// exit status of 0 with a summary counts as success.
func collect(res *kernelResult, streamFile, outDir string) {
	filesDir := filepath.Join(outDir, "files")
	data, err := func() ([]byte, error) {
		f, err := os.Open(streamFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return vmproto.ReadStream(f)
	}()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = vmproto.ErrNoStream
		}
		res.fail("no results: %v", err)
		if res.ExitStatus != nil {
			res.note("payload exit status %d seen on the console", *res.ExitStatus)
		}
		res.finish()
		return
	}
	u, err := vmproto.Unpack(data, filesDir)
	if err != nil {
		res.fail("unpacking results: %v", err)
	}
	if u != nil {
		res.Files = u.Files
		if res.Files == nil {
			res.Files = []string{}
		}
		res.FilesDir = filesDir
		if len(u.Output) > 0 {
			res.OutputLog = filepath.Join(outDir, "output.log")
			if err := os.WriteFile(res.OutputLog, u.Output, 0o644); err != nil {
				res.note("saving output: %v", err)
			}
		}
		if m := u.Meta; m != nil {
			status := m.ExitStatus
			res.ExitStatus = &status
			res.Signal = m.Signal
			res.PayloadSeconds = math.Round(m.PayloadSeconds*100) / 100
			res.GuestUptimeAtInit = m.UptimeAtInit
			res.Modules = m.Modules
			if m.KernelRelease != "" {
				res.KernelRelease = m.KernelRelease
			}
			for _, n := range m.Notes {
				res.note("%s", n)
			}
			if m.TimedOut {
				res.TimedOut = true
				res.fail("payload killed at its deadline")
			}
			for name, s := range m.Modules {
				if s != "loaded" && s != "already loaded" {
					res.note("module %s: %s", name, s)
				}
			}
		} else {
			res.fail("results carry no %s", vmproto.MetaName)
		}
	}
	switch {
	case res.ExitStatus == nil:
		res.fail("payload exit status unknown")
	case *res.ExitStatus < 0:
		res.fail("payload could not be started")
	case *res.ExitStatus != 0:
		if res.Signal != "" {
			res.fail("payload exited with status %d (%s)", *res.ExitStatus, res.Signal)
		} else {
			res.fail("payload exited with status %d", *res.ExitStatus)
		}
	}
	summary, err := os.ReadFile(filepath.Join(filesDir, "summary.json"))
	switch {
	case err != nil:
		res.fail("payload wrote no summary.json")
	case json.Valid(summary):
		res.Summary = json.RawMessage(bytes.TrimSpace(summary))
	default:
		// Carried as a JSON string so the report stays valid JSON.
		s, _ := json.Marshal(string(summary))
		res.Summary = s
		res.fail("summary.json is not valid JSON")
	}
	res.finish()
}

// finish sets the verdict from the errors collected so far.
func (r *kernelResult) finish() { r.OK = len(r.Errors) == 0 }

func printTable(w io.Writer, results []*kernelResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tRELEASE\tBOOT\tEXIT\tPAYLOAD\tWALL\tRESULT\tNOTES")
	for _, r := range results {
		exit := "-"
		if r.ExitStatus != nil {
			exit = fmt.Sprint(*r.ExitStatus)
		}
		boot := "-"
		if r.BootSeconds > 0 {
			boot = fmt.Sprintf("%.1fs", r.BootSeconds)
		}
		notes := append(append([]string{}, r.Errors...), r.Notes...)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\t%.1fs\t%s\t%s\n", r.Name, orDash(r.KernelRelease), boot, exit,
			r.PayloadSeconds, r.WallSeconds, r.status(), strings.Join(notes, "; "))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// kernelTrouble are console messages worth surfacing in the table: they
// often explain a missing result (a panic ends the guest before init can
// report) or hint at flaky timing (stalls under an overloaded TCG host).
var kernelTrouble = []string{
	"Kernel panic - not syncing",
	"BUG: ",
	"Oops: ",
	"general protection fault",
	"WARNING: CPU:",
	"soft lockup",
	"self-detected stall",
	"blocked for more than",
}

// scanConsole returns the first console line of each kind of kernel trouble.
func scanConsole(logPath string) []string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return nil
	}
	var found []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range kernelTrouble {
			if !seen[k] && strings.Contains(line, k) {
				seen[k] = true
				// Drop the "[   12.345678] " timestamp.
				if i := strings.Index(line, "] "); strings.HasPrefix(line, "[") && i > 0 {
					line = line[i+2:]
				}
				found = append(found, strings.TrimSpace(line))
			}
		}
	}
	return found
}

// printTail shows the end of a failed guest's console, which usually holds
// the reason (a panic, a verifier log, a hung payload's last words).
func printTail(w io.Writer, name, logPath string, n int) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintf(w, "\n--- %s: last %d lines of %s ---\n%s\n", name, len(lines), logPath, strings.Join(lines, "\n"))
}
