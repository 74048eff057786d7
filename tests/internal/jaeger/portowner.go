package jaeger

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portOwner describes the process listening on TCP port port ("4318"), as
// "pid N (command line)", by matching the socket inode from /proc/net/tcp{,6}
// against every process's open descriptors. It returns "" when no listener or
// no owner is visible (another network namespace, or no permission to read
// other processes' descriptors when not root).
func portOwner(port string) (string, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", err
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(table, uint16(p), inodes); err != nil && !os.IsNotExist(err) {
			return "", err
		}
	}
	if len(inodes) == 0 {
		return "", nil
	}
	fdDirs, err := filepath.Glob("/proc/[0-9]*/fd")
	if err != nil {
		return "", err
	}
	for _, dir := range fdDirs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // exited meanwhile, or not ours to read
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(link, "socket:[")
			if !ok || !inodes[strings.TrimSuffix(inode, "]")] {
				continue
			}
			procDir := filepath.Dir(dir)
			return fmt.Sprintf("pid %s (%s)", filepath.Base(procDir), commandLine(procDir)), nil
		}
	}
	return "", nil
}

// listeningInodes adds to inodes the socket inodes of the listeners on port
// found in a /proc/net/tcp-format table.
func listeningInodes(table string, port uint16, inodes map[string]bool) error {
	f, err := os.Open(table)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header line
	// Each line: sl local_address rem_address st tx:rx tr:when retrnsmt uid
	// timeout inode ...; addresses are HEXIP:HEXPORT, state 0A is LISTEN.
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(fields[1], ':')
		if i < 0 {
			continue
		}
		lp, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
		if err != nil || uint16(lp) != port {
			continue
		}
		inodes[fields[9]] = true
	}
	return sc.Err()
}

// commandLine returns the command line of the process whose /proc directory
// is procDir, falling back to its name.
func commandLine(procDir string) string {
	if b, err := os.ReadFile(filepath.Join(procDir, "cmdline")); err == nil && len(b) > 0 {
		return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	}
	if b, err := os.ReadFile(filepath.Join(procDir, "comm")); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "unknown command"
}
