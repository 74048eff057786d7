package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zerotrace/zerotrace/probes"
)

// Selector picks processes by executable and by listening port, for
// --exe and --port: at start, and again as processes start later.
type Selector struct {
	Exes  []string // globs, matched against the executable's path and name
	Ports []int
}

// Empty tells whether the selector selects nothing.
func (s Selector) Empty() bool { return len(s.Exes) == 0 && len(s.Ports) == 0 }

// String names the selection for messages.
func (s Selector) String() string {
	var parts []string
	for _, g := range s.Exes {
		parts = append(parts, "--exe "+g)
	}
	for _, p := range s.Ports {
		parts = append(parts, "--port "+strconv.Itoa(p))
	}
	return strings.Join(parts, ", ")
}

// Check rejects malformed globs and ports up front.
func (s Selector) Check() error {
	for _, g := range s.Exes {
		if _, err := filepath.Match(g, ""); err != nil {
			return fmt.Errorf("invalid --exe %q: %w", g, err)
		}
	}
	for _, p := range s.Ports {
		if p <= 0 || p > 65535 {
			return fmt.Errorf("invalid --port %d: want 1 to 65535", p)
		}
	}
	return nil
}

// Matches says whether process pid is selected, and by what.
func (s Selector) Matches(pid int) (string, bool) {
	if len(s.Exes) > 0 {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			for _, g := range s.Exes {
				if ok, _ := filepath.Match(g, exe); ok {
					return "--exe " + g, true
				}
				if ok, _ := filepath.Match(g, filepath.Base(exe)); ok {
					return "--exe " + g, true
				}
			}
		}
	}
	if len(s.Ports) > 0 {
		listening, _ := probes.ListeningPorts(pid) // nil when it exited
		for _, p := range s.Ports {
			if listening[p] {
				return "--port " + strconv.Itoa(p), true
			}
		}
	}
	return "", false
}

// Processes lists the PIDs of every process but self.
func Processes(self int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		out = append(out, pid)
	}
	return out
}
