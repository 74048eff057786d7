package inject

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/probes"
)

// adoptConnections puts the established client TCP connections that
// process pid already has into the sockhash. The sockops program only sees
// connections opened after it was attached, and a service's keep-alive
// pool can live for hours: without this its requests would go out without
// context until the pool turned over.
//
// Each socket is borrowed with pidfd_getfd, added by its cookie, and the
// borrowed descriptor closed again; the socket itself is the process's.
// Sockets on a port the process listens on are the server side of its
// connections and are left alone. Returns how many were added.
func (inj *Injector) adoptConnections(pid int) (int, error) {
	listening, err := probes.ListeningPorts(pid)
	if err != nil {
		return 0, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	added := 0
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			continue // closed in between
		}
		if inj.adoptSocket(fd, listening) {
			added++
		}
		unix.Close(fd)
	}
	return added, nil
}

// adoptSocket adds fd's socket when it is an established TCP client
// connection.
func (inj *Injector) adoptSocket(fd int, listening map[int]bool) bool {
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return false
	}
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || proto != unix.IPPROTO_TCP {
		return false
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != unix.BPF_TCP_ESTABLISHED {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	var port int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	default:
		return false
	}
	if listening[port] {
		return false
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return false
	}
	// Fails for a socket another sockhash already holds; its requests
	// are then counted as not seen.
	return inj.objs.InjectSocks.Update(cookie, uint64(fd), 0) == nil
}
