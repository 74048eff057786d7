// Package openssl reads the plaintext of TLS connections made with OpenSSL
// (libssl 3.0: Python's ssl module, curl) and with the OpenSSL built into
// Node.js, for processes traced from the kernel (probes/syscalls): uprobes
// on the library's read and write functions (bpf/openssl) turn each into a
// record of the kernel path's shape, which the correlator feeds into the
// connection's socket stream (correlate.SockData.TLS), so that HTTP/1.x
// and the other kernel-path protocols are seen over TLS too.
package openssl

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/syscalls"
)

// Records are the ring-buffer records of the TLS plaintext probes, for the
// reader's table (probes/registry): the kernel path's sock_data_event under
// a type of their own, marked TLS.
func Records() []events.Record {
	return []events.Record{{
		Type:    uint8(opensslOpensslRecordEVENT_TLS_DATA),
		Name:    "tls_data_event",
		MinSize: syscalls.SockDataMin,
		Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
			s, err := syscalls.DecodeSockData(raw, d)
			if err != nil {
				return nil, err
			}
			s.TLS = true
			return s, nil
		},
	}}
}

// Tracer holds the loaded programs and the uprobes of each process.
type Tracer struct {
	mu    sync.Mutex
	objs  opensslPrograms
	procs map[int][]link.Link
}

// Spec returns the programs and maps, ready to load with
// shared.Replacements() (and, to share the kernel path's state, the maps
// of syscalls.Tracer.TLSMaps).
func Spec(shared *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadOpenssl()
	if err != nil {
		return nil, fmt.Errorf("TLS plaintext probes: %w", err)
	}
	if err := shared.SetConstants(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// NewTracer loads the programs, sharing the syscall programs' maps of TLS
// descriptors and their count of model-call bytes not copied
// (syscalls.Tracer.TLSMaps); none is attached until Attach.
func NewTracer(shared *events.Shared, kernelFDs, tlsThreads, genaiLosses *ebpf.Map) (*Tracer, error) {
	spec, err := Spec(shared)
	if err != nil {
		return nil, err
	}
	// The syscall programs' handlers (bpf/syscalls/io.h) are compiled into
	// this object too: their per-descriptor and per-call state (sock_fds,
	// pending_bodies, genai_budgets) is this object's own, the
	// plaintext's; their counters, and any map user space fills for them
	// (configuration), must be the syscall programs' own, passed in here.
	repl := shared.Replacements()
	repl[opensslMapKernelFds] = kernelFDs
	repl[opensslMapTlsThreads] = tlsThreads
	repl[opensslMapGenaiLosses] = genaiLosses
	t := &Tracer{procs: map[int][]link.Link{}}
	if err := spec.LoadAndAssign(&t.objs, shared.Options(repl)); err != nil {
		return nil, fmt.Errorf("loading the TLS plaintext probes: %w", err)
	}
	return t, nil
}

// Attach probes the TLS library of process pid, if it has one it knows
// (FindSites), and returns what it probed. The error wraps ErrNoTLS when
// the process has no OpenSSL; any other error means that its plaintext is
// not read (the process is still traced from the kernel).
func (t *Tracer) Attach(pid int) (*Sites, error) {
	s, err := FindSites(pid)
	if err != nil {
		return nil, err
	}
	return t.attach(pid, s)
}

// AttachLoaded is Attach for a process that had no OpenSSL when it was
// attached: it looks only for a libssl loaded since (a look at
// /proc/PID/maps), which costs little enough to be done every second.
func (t *Tracer) AttachLoaded(pid int) (*Sites, error) {
	s, err := FindLibssl(pid)
	if err != nil {
		return nil, err
	}
	return t.attach(pid, s)
}

func (t *Tracer) attach(pid int, s *Sites) (*Sites, error) {
	// The return programs are uretprobes, which replace the function's
	// return address on the stack: safe in C code, fatal in a Go program,
	// whose runtime crashes when it finds the trampoline on a goroutine
	// stack. So never into a Go program, not even one linking OpenSSL
	// through cgo (the Go probes trace those); a traced process's child may
	// have exec'd one.
	if _, err := buildinfo.ReadFile(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return nil, fmt.Errorf("%w: pid %d runs a Go program (no uretprobe goes into Go programs)", ErrNoTLS, pid)
	}
	ex, err := link.OpenExecutable(s.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.procs[pid] != nil {
		return s, nil
	}
	readEnter, writeEnter := t.objs.ReadExEnter, t.objs.WriteExEnter
	if s.Kind == Exported {
		readEnter, writeEnter = t.objs.ReadIntEnter, t.objs.WriteIntEnter
	}
	// Returns first: a return without its entry is ignored, an entry
	// without its return would leave its call behind.
	var links []link.Link
	for _, u := range []struct {
		prog *ebpf.Program
		off  uint64
		ret  bool
	}{
		{t.objs.ReadReturn, s.Read, true},
		{t.objs.WriteReturn, s.Write, true},
		{readEnter, s.Read, false},
		{writeEnter, s.Write, false},
	} {
		opts := &link.UprobeOptions{Address: u.off, PID: pid}
		var l link.Link
		if u.ret {
			l, err = ex.Uretprobe("ssl", u.prog, opts)
		} else {
			l, err = ex.Uprobe("ssl", u.prog, opts)
		}
		if err != nil {
			closeAll(links)
			return nil, fmt.Errorf("%s: attaching at file offset %#x: %w", s.Name, u.off, err)
		}
		links = append(links, l)
	}
	t.procs[pid] = links
	return s, nil
}

// Detach takes the probes of process pid off, if any.
func (t *Tracer) Detach(pid int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	links := t.procs[pid]
	delete(t.procs, pid)
	return closeAll(links)
}

// Close takes every probe off and unloads the programs.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for pid, links := range t.procs {
		errs = append(errs, closeAll(links))
		delete(t.procs, pid)
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// closeAll closes links in reverse order: entries before returns.
func closeAll(links []link.Link) error {
	var errs []error
	for i := len(links) - 1; i >= 0; i-- {
		errs = append(errs, links[i].Close())
	}
	return errors.Join(errs...)
}

// String describes the sites for the agent's output.
func (s *Sites) String() string {
	if s.Kind == Exported {
		return fmt.Sprintf("SSL_read and SSL_write of %s (entry %s and return each)", s.Name, s.ReadInst)
	}
	return fmt.Sprintf("ssl_read_internal and ssl_write_internal of %s at %#x and %#x (entry %s and return each)",
		s.Name, s.Read, s.Write, s.ReadInst)
}
