package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zerotrace/zerotrace/probes"
)

// selector picks processes by executable and by listening port, for
// --exe and --port: at start, and again as processes start later.
type selector struct {
	exes  []string // globs, matched against the executable's path and name
	ports []int
}

func (s selector) empty() bool { return len(s.exes) == 0 && len(s.ports) == 0 }

// String names the selection for messages.
func (s selector) String() string {
	var parts []string
	for _, g := range s.exes {
		parts = append(parts, "--exe "+g)
	}
	for _, p := range s.ports {
		parts = append(parts, "--port "+strconv.Itoa(p))
	}
	return strings.Join(parts, ", ")
}

// check rejects malformed globs and ports up front.
func (s selector) check() error {
	for _, g := range s.exes {
		if _, err := filepath.Match(g, ""); err != nil {
			return fmt.Errorf("invalid --exe %q: %w", g, err)
		}
	}
	for _, p := range s.ports {
		if p <= 0 || p > 65535 {
			return fmt.Errorf("invalid --port %d: want 1 to 65535", p)
		}
	}
	return nil
}

// matches says whether process pid is selected, and by what.
func (s selector) matches(pid int) (string, bool) {
	if len(s.exes) > 0 {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			for _, g := range s.exes {
				if ok, _ := filepath.Match(g, exe); ok {
					return "--exe " + g, true
				}
				if ok, _ := filepath.Match(g, filepath.Base(exe)); ok {
					return "--exe " + g, true
				}
			}
		}
	}
	if len(s.ports) > 0 {
		listening, _ := probes.ListeningPorts(pid) // nil when it exited
		for _, p := range s.ports {
			if listening[p] {
				return "--port " + strconv.Itoa(p), true
			}
		}
	}
	return "", false
}

// processes lists the PIDs of every process but self.
func processes(self int) []int {
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
