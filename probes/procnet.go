package probes

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCPSocket is a TCP socket of a process, as /proc/PID/net/tcp{,6} shows it.
type TCPSocket struct {
	// V6: the socket is an AF_INET6 one (its IPv4 peers appear as
	// ::ffff:a.b.c.d), as the kernel holds it.
	V6            bool
	Local, Remote netip.AddrPort
	Listening     bool
	Established   bool
}

// ProcessTCP returns the TCP sockets process pid holds: the sockets of its
// network namespace (/proc/PID/net/tcp, tcp6) whose inode is one of its
// descriptors.
func ProcessTCP(pid int) ([]TCPSocket, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pid %d: listing its descriptors: %w", pid, err)
	}
	inodes := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed in between
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var out []TCPSocket
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, name))
		if err != nil {
			continue // no IPv6, or the process exited
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			local, err1 := procAddr(fields[1])
			remote, err2 := procAddr(fields[2])
			if err1 != nil || err2 != nil {
				continue
			}
			out = append(out, TCPSocket{
				V6: name == "tcp6", Local: local, Remote: remote,
				Listening: fields[3] == "0A", Established: fields[3] == "01",
			})
		}
		f.Close()
	}
	return out, nil
}

// procAddr parses an address of /proc/net/tcp: the address as the kernel
// stores it (32-bit words in host order, here little-endian), hex, then
// ":" and the port in hex.
func procAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if !ok || err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || len(raw) != 4 && len(raw) != 16 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// ListeningPorts returns the TCP ports process pid itself listens on.
func ListeningPorts(pid int) (map[int]bool, error) {
	socks, err := ProcessTCP(pid)
	if err != nil {
		return nil, err
	}
	ports := map[int]bool{}
	for _, s := range socks {
		if s.Listening {
			ports[int(s.Local.Port())] = true
		}
	}
	return ports, nil
}
