// Package syscalls traces processes from the kernel, whatever their
// language (see bpf/syscalls/): the TCP connections of every traced
// process (sock:inet_sock_set_state through BTF, and the accept syscalls),
// and the HTTP/1.x, PostgreSQL, MySQL and Redis traffic of processes that are not
// Go programs, from syscall tracepoints on their socket reads and writes.
// The syscall tracepoints need tracefs, which it mounts when nothing has.
package syscalls

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
)

// tracefsDir is where the agent looks for tracefs, and mounts it if absent.
const tracefsDir = "/sys/kernel/tracing"

// Tracer is the syscall tracepoints, shared by every process traced this
// way; Add and Remove say which processes.
type Tracer struct {
	objs  httpsysObjects
	links []link.Link
	iter  *link.Iter // the byte counts of open connections
	http  bool       // the syscall tracepoints are attached
}

// tracepoints are the programs and where they go.
func (t *Tracer) tracepoints() []struct {
	name string
	prog *ebpf.Program
} {
	o := &t.objs
	return []struct {
		name string
		prog *ebpf.Program
	}{
		{"sys_enter_read", o.SysEnterRead}, {"sys_exit_read", o.SysExitRead},
		{"sys_enter_recvfrom", o.SysEnterRecvfrom}, {"sys_exit_recvfrom", o.SysExitRecvfrom},
		{"sys_enter_write", o.SysEnterWrite}, {"sys_enter_sendto", o.SysEnterSendto},
		// The exits of writes only report how much of a response's body
		// went (see pending_bodies).
		{"sys_exit_write", o.SysExitWrite}, {"sys_exit_sendto", o.SysExitSendto},
		{"sys_enter_close", o.SysEnterClose},
		{"sys_enter_readv", o.SysEnterReadv}, {"sys_exit_readv", o.SysExitReadv},
		// Accepts name the process that owns a server connection;
		// without them the listening port does (wrong for pre-forked
		// workers sharing one socket).
		{"sys_exit_accept4", o.SysExitAccept4}, {"sys_exit_accept", o.SysExitAccept},
		{"sys_enter_recvmsg", o.SysEnterRecvmsg}, {"sys_exit_recvmsg", o.SysExitRecvmsg},
		{"sys_enter_writev", o.SysEnterWritev}, {"sys_enter_sendmsg", o.SysEnterSendmsg},
		{"sys_exit_writev", o.SysExitWritev}, {"sys_exit_sendmsg", o.SysExitSendmsg},
		// A response body sent from a file.
		{"sys_enter_sendfile64", o.SysEnterSendfile64}, {"sys_exit_sendfile64", o.SysExitSendfile64},
	}
}

// ensureTracefs mounts tracefs when the tracepoints' directory is missing.
// It stays mounted: other tools may start using it.
func ensureTracefs() error {
	if _, err := os.Stat(tracefsDir + "/events/syscalls"); err == nil {
		return nil
	}
	if _, err := os.Stat(tracefsDir + "/events"); err != nil {
		if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
			return fmt.Errorf("tracefs is not mounted and mounting it at %s failed (%w): run mount -t tracefs nodev %s", tracefsDir, err, tracefsDir)
		}
	}
	if _, err := os.Stat(tracefsDir + "/events/syscalls"); err != nil {
		return errors.New("this kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)")
	}
	return nil
}

// Spec returns the programs and maps, ready to load with
// shared.Replacements().
func Spec(shared *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadHttpsys()
	if err != nil {
		return nil, fmt.Errorf("kernel HTTP tracing: %w", err)
	}
	if err := shared.SetConstants(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// NewTracer loads the programs and attaches the tracepoints that need no
// tracefs and cost nothing to untraced processes' syscalls: connections
// (sock/inet_sock_set_state), forks and exits, through BTF. No process is
// traced until AddConnections or AddHTTP.
func NewTracer(shared *events.Shared) (*Tracer, error) {
	t := &Tracer{}
	spec, err := Spec(shared)
	if err != nil {
		return nil, err
	}
	opts := &ebpf.CollectionOptions{MapReplacements: shared.Replacements()}
	if err := spec.LoadAndAssign(&t.objs, opts); err != nil {
		t.Close()
		return nil, fmt.Errorf("loading the kernel tracing programs: %w", err)
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sock/inet_sock_set_state", t.objs.InetSockSetState},
		{"sched/sched_process_fork", t.objs.SchedProcessFork},
		{"sched/sched_process_exit", t.objs.SchedProcessExit},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: tp.prog})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attaching to tracepoint %s: %w", tp.name, err)
		}
		t.links = append(t.links, l)
	}
	it, err := link.AttachIter(link.IterOptions{Program: t.objs.ConnBytes})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("attaching the TCP socket iterator: %w", err)
	}
	t.iter = it
	t.links = append(t.links, it)
	return t, nil
}

// AddConnections follows the TCP connections of process pid from now on:
// those it opens, and those it accepts on listening.
func (t *Tracer) AddConnections(pid int, listening []int) error {
	if err := t.objs.ConnTgids.Put(uint32(pid), uint8(1)); err != nil {
		return fmt.Errorf("pid %d: following its connections: %w", pid, err)
	}
	for _, p := range listening {
		if err := t.objs.TracedPorts.Put(uint16(p), uint32(pid)); err != nil {
			return fmt.Errorf("pid %d: following connections to port %d: %w", pid, p, err)
		}
	}
	return nil
}

// connEnds (struct conn_ends) is a socket's endpoints as the kernel holds
// them; connOwner (struct conn_owner) the traced process it belongs to, and
// its role.
type (
	connEnds  = httpsysConnEnds
	connOwner = httpsysConnOwner
)

// AdoptConnections makes the close of process pid's established
// connections, which predate the agent, reported like the others. It
// returns them as ConnEvents that open them in the table, at the time
// given.
func (t *Tracer) AdoptConnections(pid int, socks []probes.TCPSocket, at time.Time) ([]*correlate.ConnEvent, error) {
	listening := map[uint16]bool{}
	for _, s := range socks {
		if s.Listening {
			listening[s.Local.Port()] = true
		}
	}
	var events []*correlate.ConnEvent
	var errs []error
	for _, s := range socks {
		if !s.Established {
			continue
		}
		server := listening[s.Local.Port()]
		k := connEnds{Family: unix.AF_INET, LocalPort: s.Local.Port(), RemotePort: s.Remote.Port()}
		if s.V6 {
			k.Family = unix.AF_INET6
			k.LocalIp, k.RemoteIp = s.Local.Addr().As16(), s.Remote.Addr().As16()
		} else {
			l, r := s.Local.Addr().As4(), s.Remote.Addr().As4()
			copy(k.LocalIp[:], l[:])
			copy(k.RemoteIp[:], r[:])
		}
		o := connOwner{Tgid: uint32(pid), Role: uint8(httpsysConnRoleCONN_CLIENT)}
		if server {
			o.Role = uint8(httpsysConnRoleCONN_SERVER)
		}
		if err := t.objs.AdoptedConns.Put(k, o); err != nil {
			errs = append(errs, err)
			continue
		}
		events = append(events, &correlate.ConnEvent{
			PID: uint32(pid), Time: at, Open: true, Server: server, Before: true,
			Local:  netip.AddrPortFrom(s.Local.Addr().Unmap(), s.Local.Port()),
			Remote: netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port()),
		})
	}
	if len(errs) > 0 {
		return events, fmt.Errorf("pid %d: following %d connections opened before the agent: %w", pid, len(errs), errs[0])
	}
	return events, nil
}

// connBytes is what the iterator writes per connection (struct
// open_conn_bytes).
type connBytes = httpsysOpenConnBytes

// LiveBytes reads the byte counts of every followed connection that is
// still open, walking the host's TCP sockets once.
func (t *Tracer) LiveBytes() ([]correlate.ConnBytes, error) {
	rd, err := t.iter.Open()
	if err != nil {
		return nil, fmt.Errorf("reading the TCP socket iterator: %w", err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading the TCP socket iterator: %w", err)
	}
	size := binary.Size(connBytes{})
	out := make([]correlate.ConnBytes, 0, len(data)/size)
	for ; len(data) >= size; data = data[size:] {
		var b connBytes
		if _, err := binary.Decode(data[:size], binary.NativeEndian, &b); err != nil {
			return nil, err
		}
		c := correlate.ConnBytes{PID: b.Tgid, Sock: b.Sock, BytesReceived: b.BytesReceived, BytesSent: b.BytesAcked}
		if b.Ends.Family != 0 {
			c.Local, c.Remote = b.Ends.addrs()
		}
		out = append(out, c)
	}
	return out, nil
}

// addrs returns the endpoints, IPv4-mapped addresses unmapped.
func (e httpsysConnEnds) addrs() (local, remote netip.AddrPort) {
	var l, r netip.Addr
	if e.Family == unix.AF_INET {
		l, r = netip.AddrFrom4([4]byte(e.LocalIp[:4])), netip.AddrFrom4([4]byte(e.RemoteIp[:4]))
	} else {
		l, r = netip.AddrFrom16(e.LocalIp).Unmap(), netip.AddrFrom16(e.RemoteIp).Unmap()
	}
	return netip.AddrPortFrom(l, e.LocalPort), netip.AddrPortFrom(r, e.RemotePort)
}

// AddHTTP traces the HTTP/1.x (and PostgreSQL, MySQL, Redis, TLS server names) of
// process pid from its socket syscalls, attaching the syscall tracepoints on
// first use. Those are attached only then: once any syscall tracepoint is,
// every syscall of every process on the host takes the kernel's slower
// tracing path, which a host tracing Go programs alone need not pay.
func (t *Tracer) AddHTTP(pid int) error {
	if !t.http {
		if err := ensureTracefs(); err != nil {
			return err
		}
		for _, tp := range t.tracepoints() {
			l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
			if err != nil {
				return fmt.Errorf("attaching to tracepoint syscalls/%s: %w", tp.name, err)
			}
			t.links = append(t.links, l)
		}
		t.http = true
	}
	if err := t.objs.TracedTgids.Put(uint32(pid), uint8(httpsysTracedHowTRACED_SELECTED)); err != nil {
		return fmt.Errorf("pid %d: tracing its sockets: %w", pid, err)
	}
	return nil
}

// Close detaches every tracepoint and unloads the programs.
func (t *Tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
