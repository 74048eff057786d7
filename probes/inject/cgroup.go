package inject

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupMount is where the cgroup v2 hierarchy is mounted: found in the
// mount table, or mounted by the agent when there is none (and unmounted
// again on Close).
type cgroupMount struct {
	dir     string
	mounted bool // by us
}

func (m *cgroupMount) path(rel string) string { return filepath.Join(m.dir, rel) }

func (m *cgroupMount) Close() error {
	if !m.mounted {
		return nil
	}
	m.mounted = false
	if err := unix.Unmount(m.dir, 0); err != nil {
		return fmt.Errorf("unmounting %s: %w", m.dir, err)
	}
	return os.Remove(m.dir)
}

// privateCgroupDir is where the agent mounts cgroup v2 when nothing has.
const privateCgroupDir = "/run/zerotrace/cgroup2"

func findCgroup2() (*cgroupMount, error) {
	dir, err := cgroup2FromMountinfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	if dir != "" {
		return &cgroupMount{dir: dir}, nil
	}
	if err := os.MkdirAll(privateCgroupDir, 0o700); err != nil {
		return nil, fmt.Errorf("no cgroup v2 hierarchy is mounted and creating %s failed: %w", privateCgroupDir, err)
	}
	if err := unix.Mount("cgroup2", privateCgroupDir, "cgroup2", 0, ""); err != nil {
		return nil, fmt.Errorf("no cgroup v2 hierarchy is mounted and mounting one at %s failed: %w", privateCgroupDir, err)
	}
	return &cgroupMount{dir: privateCgroupDir, mounted: true}, nil
}

// cgroup2FromMountinfo returns the mount point of the first cgroup2 mount
// of the whole hierarchy, "" when there is none.
func cgroup2FromMountinfo(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, after := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(after) < 1 || after[0] != "cgroup2" || fields[3] != "/" {
			continue
		}
		return unescapeMount(fields[4]), nil
	}
	return "", sc.Err()
}

// unescapeMount undoes the octal escapes of mountinfo (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// processCgroup is the cgroup v2 path of process pid, relative to the
// hierarchy's root.
func processCgroup(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("pid %d: reading its cgroup: %w", pid, err)
	}
	return parseCgroupFile(string(data), pid)
}

func parseCgroupFile(data string, pid int) (string, error) {
	for line := range strings.SplitSeq(data, "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			if rel == "" {
				rel = "/"
			}
			return rel, nil
		}
	}
	return "", errors.New("pid " + fmt.Sprint(pid) + " has no cgroup v2 membership (no 0:: line in /proc/PID/cgroup)")
}
