// Package syscalls traces processes from the kernel, whatever their
// language (see bpf/syscalls/): the TCP connections of every traced
// process (sock:inet_sock_set_state through BTF, and the accept syscalls),
// and the HTTP/1.x, PostgreSQL, MySQL and Redis traffic of processes that are not
// Go programs, from their socket reads and writes, seen by one program on
// the raw sys_enter tracepoint and one on sys_exit (through BTF: no tracefs).
package syscalls

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
)

// Tracer is the kernel-level tracing, shared by every process traced this
// way; AddConnections, AddHTTP and Forget say which processes. Each program
// is attached only while some process needs it: nothing at first, the
// connection tracepoint and the exit tracepoint once a process's
// connections are followed, and the syscall programs and the fork
// tracepoint once a process is traced from the kernel. Any program on a
// syscall tracepoint slows every syscall of every process on the host,
// which a host tracing Go programs alone need not pay.
type Tracer struct {
	mu      sync.Mutex
	objs    tracerObjects
	iter    *link.Iter           // the byte counts of open connections
	links   map[string]link.Link // attached now, by program name
	bits    []byte               // .bss, mapped from the kernel
	bitsOff int                  // where tgid_bits is in it
}

// tracerObjects are the programs and maps, and the .bss holding tgid_bits,
// which user space changes with atomic adds through its own mapping. It
// leaves out bpf2go's Variables on purpose: loading them makes cilium/ebpf
// map the .bss too, and the kernel populates every page of a BPF array's
// mapping at mmap time, so a second mapping of the 2 MB bitmap cost the
// agent 2 MB of resident memory for nothing.
type tracerObjects struct {
	httpsysPrograms
	httpsysMaps
	Bss *ebpf.Map `ebpf:".bss"`
}

// Close closes the programs and the maps (not Bss).
func (o *tracerObjects) Close() error {
	return errors.Join(o.httpsysPrograms.Close(), o.httpsysMaps.Close())
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

// NewTracer loads the programs; none is attached until a process needs it
// (AddConnections, AddHTTP).
func NewTracer(shared *events.Shared) (*Tracer, error) {
	t := &Tracer{links: map[string]link.Link{}}
	spec, err := Spec(shared)
	if err != nil {
		return nil, err
	}
	v := spec.Variables[httpsysVarTgidBits]
	if v == nil || v.SectionName != ".bss" || len(v.Value) != tgidWords*tgidWordSize || v.Offset%8 != 0 {
		return nil, errors.New("loading the kernel tracing programs: no tgid_bits in .bss, or not of the size expected")
	}
	t.bitsOff = int(v.Offset)
	if err := spec.LoadAndAssign(&t.objs, shared.Options(shared.Replacements())); err != nil {
		t.Close()
		return nil, fmt.Errorf("loading the kernel tracing programs: %w", err)
	}
	page := unix.Getpagesize()
	size := (int(t.objs.Bss.ValueSize()) + page - 1) / page * page
	t.bits, err = unix.Mmap(t.objs.Bss.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.bits = nil
		t.Close()
		return nil, fmt.Errorf("mapping the traced processes' bits (a kernel before 5.5 cannot): %w", err)
	}
	// An iterator runs only when user space reads it: it costs nothing
	// until then.
	it, err := link.AttachIter(link.IterOptions{Program: t.objs.ConnBytes})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("attaching the TCP socket iterator: %w", err)
	}
	t.iter = it
	return t, nil
}

// tgid_bits: one struct tgid_word per 64 thread-group ids.
const (
	tgidWords    = 1 << 16
	tgidWordSize = int(unsafe.Sizeof(httpsysTgidWord{}))
)

// The bits of a struct tgid_word: user space owns the first two.
var (
	kernelBits = unsafe.Offsetof(httpsysTgidWord{}.Kernel)
	connsBits  = unsafe.Offsetof(httpsysTgidWord{}.Conns)
	childBits  = unsafe.Offsetof(httpsysTgidWord{}.Children)
)

// addBit adds (up) or takes away the bit of tgid pid in the bits at offset
// field of its word, atomically: the kernel's programs change other bits
// of the same word at the same time (see tgid_bits in bpf/syscalls/traced.h
// for who may change which bit, and when).
func (t *Tracer) addBit(field uintptr, pid uint32, up bool) {
	word, bit := t.word(field, pid)
	if up {
		atomic.AddUint64(word, bit)
	} else {
		atomic.AddUint64(word, -bit)
	}
}

// word is the word holding pid's bit at offset field of its struct
// tgid_word, in the kernel's memory, and that bit.
func (t *Tracer) word(field uintptr, pid uint32) (*uint64, uint64) {
	off := t.bitsOff + int(pid>>6)%tgidWords*tgidWordSize + int(field)
	return (*uint64)(unsafe.Pointer(&t.bits[off])), 1 << (pid & 63)
}

// selectPID adds pid to m (traced_tgids or conn_tgids) as selected, with
// its bit at field, unless it is there already (as the child of a traced
// process, or selected before). The bit comes first: a process in a map
// always has its bit.
func (t *Tracer) selectPID(m *ebpf.Map, field uintptr, pid uint32) error {
	var how uint8
	if err := m.Lookup(pid, &how); err == nil {
		return nil
	}
	t.addBit(field, pid, true)
	err := m.Update(pid, uint8(httpsysTracedHowTRACED_SELECTED), ebpf.UpdateNoExist)
	if err != nil {
		t.addBit(field, pid, false)
		if errors.Is(err, ebpf.ErrKeyExist) {
			return nil // its parent forked it just now: traced as a child
		}
	}
	return err
}

// forgetPID removes pid from m, with its bit at field, if user space put it
// there and it is still there: a process that exited while it was being
// added, so that the exit tracepoint did not see it. Whoever deletes the
// entry takes the bit away.
func (t *Tracer) forgetPID(m *ebpf.Map, field uintptr, pid uint32) {
	var how uint8
	if err := m.Lookup(pid, &how); err != nil || how != uint8(httpsysTracedHowTRACED_SELECTED) {
		return
	}
	if m.Delete(pid) == nil {
		t.addBit(field, pid, false)
	}
}

// attach attaches the programs named that are not attached yet, by BTF.
func (t *Tracer) attach(names ...string) error {
	for _, name := range names {
		if t.links[name] != nil {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: t.program(name)})
		if err != nil {
			return fmt.Errorf("attaching %s: %w", name, err)
		}
		t.links[name] = l
	}
	return nil
}

// detach detaches the programs named, if attached.
func (t *Tracer) detach(names ...string) error {
	var errs []error
	for _, name := range names {
		if l := t.links[name]; l != nil {
			errs = append(errs, l.Close())
			delete(t.links, name)
		}
	}
	return errors.Join(errs...)
}

func (t *Tracer) program(name string) *ebpf.Program {
	return map[string]*ebpf.Program{
		httpsysProgInetSockSetState: t.objs.InetSockSetState,
		httpsysProgSchedProcessExit: t.objs.SchedProcessExit,
		httpsysProgSchedProcessFork: t.objs.SchedProcessFork,
		httpsysProgSysEnter:         t.objs.SysEnter,
		httpsysProgSysExit:          t.objs.SysExit,
	}[name]
}

var (
	// connPrograms are attached while any process's connections are
	// followed: connections, and exits (which forget processes).
	connPrograms = []string{httpsysProgInetSockSetState, httpsysProgSchedProcessExit}
	// syscallPrograms are attached while any process is traced from the
	// kernel, with the exits: its syscalls (reads, writes, closes and
	// accepts), and forks (its children are traced too).
	syscallPrograms = []string{httpsysProgSysEnter, httpsysProgSysExit, httpsysProgSchedProcessFork}
)

// AddConnections follows the TCP connections of process pid from now on:
// those it opens, and those it accepts on listening.
func (t *Tracer) AddConnections(pid int, listening []int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.attach(connPrograms...); err != nil {
		return fmt.Errorf("following connections: %w", err)
	}
	if err := t.selectPID(t.objs.ConnTgids, connsBits, uint32(pid)); err != nil {
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

// AddHTTP traces the HTTP/1.x (and PostgreSQL, MySQL, Redis, TLS server
// names) of process pid from its socket syscalls, attaching the syscall
// programs on first use. Those are attached only then: while they are,
// every syscall of every process on the host takes the kernel's slower
// tracing path, which a host tracing Go programs alone need not pay.
func (t *Tracer) AddHTTP(pid int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.attach(append(syscallPrograms, httpsysProgSchedProcessExit)...); err != nil {
		return fmt.Errorf("tracing from the kernel: %w", err)
	}
	if err := t.selectPID(t.objs.TracedTgids, kernelBits, uint32(pid)); err != nil {
		return fmt.Errorf("pid %d: tracing its sockets: %w", pid, err)
	}
	return nil
}

// Forget is told that process pid, traced or followed, has exited. The
// kernel forgets a process when it exits; this catches one that exited
// while it was being added, and the listening ports it had. Programs that
// no process needs any more are detached: the syscall programs once no
// process is traced from the kernel (its children included), which gives
// the host's syscalls their fast path back.
func (t *Tracer) Forget(pid int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetPID(t.objs.TracedTgids, kernelBits, uint32(pid))
	t.forgetPID(t.objs.ConnTgids, connsBits, uint32(pid))
	var (
		port  uint16
		owner uint32
		ports []uint16
	)
	it := t.objs.TracedPorts.Iterate()
	for it.Next(&port, &owner) {
		if owner == uint32(pid) {
			ports = append(ports, port)
		}
	}
	var errs []error
	for _, p := range ports {
		if err := t.objs.TracedPorts.Delete(p); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	if !hasEntries(t.objs.TracedTgids) {
		errs = append(errs, t.detach(syscallPrograms...))
		if !hasEntries(t.objs.ConnTgids) {
			errs = append(errs, t.detach(connPrograms...))
		}
	}
	return errors.Join(errs...)
}

// hasEntries tells whether a map of tgids holds any.
func hasEntries(m *ebpf.Map) bool {
	var k uint32
	return m.NextKey(nil, &k) == nil
}

// Close detaches every program and unloads them.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for name, l := range t.links {
		errs = append(errs, l.Close())
		delete(t.links, name)
	}
	if t.iter != nil {
		errs = append(errs, t.iter.Close())
		t.iter = nil
	}
	if t.bits != nil {
		errs = append(errs, unix.Munmap(t.bits))
		t.bits = nil
	}
	errs = append(errs, t.objs.Close(), closeMap(t.objs.Bss))
	return errors.Join(errs...)
}

func closeMap(m *ebpf.Map) error {
	if m == nil {
		return nil
	}
	return m.Close()
}

// PIDState is what the kernel side holds for a process: its bits in the
// syscall programs' fast filter, and its entries in the maps that the
// handlers check (traced_how values, 0 when absent).
type PIDState struct {
	KernelBit, ConnsBit, ChildBit bool
	Traced, Conns                 uint8 // in traced_tgids, conn_tgids
}

// Followed reports whether the state holds anything for the process.
func (s PIDState) Followed() bool { return s != PIDState{} }

// Selected and Child are the traced_how values of PIDState.
const (
	Selected = uint8(httpsysTracedHowTRACED_SELECTED)
	Child    = uint8(httpsysTracedHowTRACED_CHILD)
)

// State reads what the kernel side holds for process pid.
func (t *Tracer) State(pid int) PIDState {
	t.mu.Lock()
	defer t.mu.Unlock()
	bit := func(field uintptr) bool {
		word, bit := t.word(field, uint32(pid))
		return atomic.LoadUint64(word)&bit != 0
	}
	var s PIDState
	s.KernelBit, s.ConnsBit, s.ChildBit = bit(kernelBits), bit(connsBits), bit(childBits)
	_ = t.objs.TracedTgids.Lookup(uint32(pid), &s.Traced)
	_ = t.objs.ConnTgids.Lookup(uint32(pid), &s.Conns)
	return s
}

// Attached names the programs attached now, sorted.
func (t *Tracer) Attached() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.links))
}

// GenAILosses are what the kernel did not copy of model calls' bodies
// (bpf/syscalls/genai.h): bytes, and the reads and writes they were part of.
type GenAILosses struct {
	Bytes, Segments uint64
}

// GenAILosses sums the kernel's per-CPU counts of model calls' body bytes
// not copied.
func (t *Tracer) GenAILosses() (GenAILosses, error) {
	var out GenAILosses
	var perCPU []uint64
	for key, dst := range map[httpsysGenaiLoss]*uint64{
		httpsysGenaiLossGENAI_LOSS_BYTES:    &out.Bytes,
		httpsysGenaiLossGENAI_LOSS_SEGMENTS: &out.Segments,
	} {
		if err := t.objs.GenaiLosses.Lookup(uint32(key), &perCPU); err != nil {
			return GenAILosses{}, fmt.Errorf("reading the model-call copy losses: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return out, nil
}

// TLSMaps returns the maps the TLS plaintext probes (probes/openssl) share
// with the syscall programs: the descriptors the kernel path marked
// (sock_fds, where a TLS socket is FD_TLS), the TLS socket each thread
// used last (tls_threads), and the count of model calls' body bytes not
// copied (genai_losses, which GenAILosses reads).
func (t *Tracer) TLSMaps() (sockFDs, tlsThreads, genaiLosses *ebpf.Map) {
	return t.objs.SockFds, t.objs.TlsThreads, t.objs.GenaiLosses
}

// Children lists the processes traced from the kernel as the children of
// traced ones (forked after their parent was selected).
func (t *Tracer) Children() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		pid  uint32
		how  uint8
		pids []int
	)
	it := t.objs.TracedTgids.Iterate()
	for it.Next(&pid, &how) {
		if how == Child {
			pids = append(pids, int(pid))
		}
	}
	return pids
}
