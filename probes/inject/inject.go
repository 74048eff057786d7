// Package inject adds the client span's W3C trace context to outgoing
// HTTP/1.x requests of traced Go clients, so that a service traced by
// another agent, on another host, continues the same trace.
//
// Two mechanisms exist, and the kernel decides which one can run:
//
//   - sk-msg: a cgroup sockops program hands the traced cgroup's client
//     connections to an sk_msg program that inserts the header into the
//     request's bytes as they are sent (bpf/inject/sockmsg.c). Needs cgroup
//     v2 and Linux 6.4 (open-coded iterators).
//   - write-user: a uprobe on net/http.Header.writeSubset writes the header
//     into the request's write buffer with bpf_probe_write_user (the net/http
//     client instrumentation does this when asked). Refused by kernels in
//     lockdown.
//
// Choose finds out which are possible by loading the programs, not by
// reading /sys/kernel/security/lockdown, which is often not mounted.
package inject

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/zerotrace/zerotrace/probes/events"
)

// Mode is an injection mechanism, or the choice of one.
type Mode string

// Modes, as the --inject flag spells them.
const (
	Auto      Mode = "auto"
	SockMsg   Mode = "sk-msg"
	WriteUser Mode = "write-user"
	Off       Mode = "off"
)

// Modes lists the values ParseMode accepts.
var Modes = []Mode{Auto, SockMsg, WriteUser, Off}

// ParseMode checks a --inject value.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("invalid --inject %q: want %s", s, strings.Join(names, ", "))
}

// Choice is the outcome of Choose.
type Choice struct {
	// Mode is the mechanism in use: SockMsg, WriteUser or Off.
	Mode Mode
	// Why says, for Off under Auto, why neither mechanism can run.
	Why string
	// Injector is set for SockMsg: attach it to each traced process's cgroup.
	Injector *Injector
}

// Choose settles the mechanism for want. Auto takes sk-msg when the kernel
// allows it, else write-user, else Off (and says why); an explicit mode the
// kernel refuses is an error.
func Choose(want Mode, shared *events.Shared) (*Choice, error) {
	switch want {
	case Off:
		return &Choice{Mode: Off, Why: "turned off with --inject off"}, nil
	case SockMsg:
		inj, err := NewInjector(shared)
		if err != nil {
			return nil, fmt.Errorf("--inject sk-msg: %w", err)
		}
		return &Choice{Mode: SockMsg, Injector: inj}, nil
	case WriteUser:
		if err := ProbeWriteUser(); err != nil {
			return nil, fmt.Errorf("--inject write-user: %w", err)
		}
		return &Choice{Mode: WriteUser}, nil
	}
	inj, sockErr := NewInjector(shared)
	if sockErr == nil {
		return &Choice{Mode: SockMsg, Injector: inj}, nil
	}
	userErr := ProbeWriteUser()
	if userErr == nil {
		return &Choice{Mode: WriteUser}, nil
	}
	return &Choice{Mode: Off, Why: fmt.Sprintf("sk-msg: %v; write-user: %v", sockErr, userErr)}, nil
}

// ProbeWriteUser loads, and never attaches, a tiny program that calls
// bpf_probe_write_user, and explains the kernel's refusal.
func ProbeWriteUser() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.Kprobe,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.FnProbeWriteUser.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err == nil {
		prog.Close()
		return nil
	}
	// A kernel in lockdown leaves the helper out of the program type's
	// list: the verifier then calls it unknown (older kernels) or not
	// usable by this program type (newer ones).
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := strings.Join(ve.Log, "\n")
		if strings.Contains(log, "unknown func") || strings.Contains(log, "cannot use helper") {
			return errors.New("the kernel refuses bpf_probe_write_user (kernel lockdown, or a kernel built without it)")
		}
	}
	return fmt.Errorf("loading a bpf_probe_write_user probe: %w", firstLine(err))
}

// CheckSockMsg tells whether this kernel has what the sk-msg programs use
// beyond sockops and sk_msg themselves: open-coded iterators (Linux 6.4).
func CheckSockMsg() error {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("reading the kernel's BTF: %w", err)
	}
	var fn *btf.Func
	if err := kernel.TypeByName("bpf_iter_num_new", &fn); err != nil {
		return errors.New("the kernel lacks open-coded iterators (bpf_iter_num, Linux 6.4+)")
	}
	return nil
}

// Spec returns the sk-msg programs and maps, ready to load with
// shared.Replacements().
func Spec(shared *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadSockmsg()
	if err != nil {
		return nil, fmt.Errorf("loading the sk_msg object: %w", err)
	}
	if err := shared.SetConstants(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// Counts are the kernel's injection counters.
type Counts struct {
	Armed, Injected, Kept, Skipped, Failed uint64
	// ReplacedForwarded are requests that forwarded the traceparent their
	// server span received (a proxy), whose parent became the client span;
	// KeptForwarded such requests left as they were (write-user cannot
	// change the proxy's own bytes safely).
	ReplacedForwarded, KeptForwarded uint64
}

// ReadCounts reads the injection counters from the shared counters map.
func ReadCounts(shared *events.Shared) (Counts, error) {
	kc, err := shared.Counters()
	if err != nil {
		return Counts{}, err
	}
	return Counts{
		Armed:    kc[events.CounterInjectArmed],
		Injected: kc[events.CounterInjected],
		Kept:     kc[events.CounterInjectKept],
		Skipped:  kc[events.CounterInjectSkipped],
		Failed:   kc[events.CounterInjectFailed],

		ReplacedForwarded: kc[events.CounterInjectReplacedForwarded],
		KeptForwarded:     kc[events.CounterInjectKeptForwarded],
	}, nil
}

// Unseen is the number of requests whose context was armed but that no
// injection program decided on: requests on connections opened before the
// agent attached (sk-msg sees only connections opened after), on sockets
// another agent's sockhash holds, and requests whose write never happened.
func (c Counts) Unseen() uint64 {
	decided := c.Injected + c.Kept + c.Skipped + c.Failed + c.ReplacedForwarded + c.KeptForwarded
	if decided >= c.Armed {
		return 0
	}
	return c.Armed - decided
}

// String summarises the counts for the status lines.
func (c Counts) String() string {
	return fmt.Sprintf("injected=%d kept_existing=%d skipped_unsafe=%d failed=%d not_seen=%d replaced_forwarded=%d kept_forwarded=%d",
		c.Injected, c.Kept, c.Skipped, c.Failed, c.Unseen(), c.ReplacedForwarded, c.KeptForwarded)
}

// Injector is the sk-msg mechanism: its programs loaded, its sk_msg program
// on its sockhash, and its sockops program on each traced cgroup.
type Injector struct {
	objs    sockmsgObjects
	msgOn   bool
	cgroups map[string]link.Link
	mount   *cgroupMount
}

// NewInjector loads the sk-msg programs and puts the sk_msg program on the
// sockhash. Nothing sees traffic until AttachProcess.
func NewInjector(shared *events.Shared) (*Injector, error) {
	if err := CheckSockMsg(); err != nil {
		return nil, err
	}
	spec, err := Spec(shared)
	if err != nil {
		return nil, err
	}
	mnt, err := findCgroup2()
	if err != nil {
		return nil, err
	}
	inj := &Injector{cgroups: map[string]link.Link{}, mount: mnt}
	if err := spec.LoadAndAssign(&inj.objs, shared.Options(shared.Replacements())); err != nil {
		mnt.Close()
		return nil, fmt.Errorf("the kernel refuses the sk_msg programs: %w", firstLine(err))
	}
	// The older attach call: bpf_link for sk_msg is refused by some kernels
	// that otherwise run these programs (6.1).
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  inj.objs.InjectSocks.FD(),
		Program: inj.objs.InjectTraceparent,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		inj.Close()
		return nil, fmt.Errorf("attaching the sk_msg program to its sockhash: %w", err)
	}
	inj.msgOn = true
	return inj, nil
}

// AttachProcess puts the sockops program on the cgroup v2 of process pid,
// once per cgroup, so that every connection a process of that cgroup opens
// from then on passes the sk_msg program, and adds the client connections
// pid already has. It says what it did in one line.
func (inj *Injector) AttachProcess(pid int) (string, error) {
	rel, err := processCgroup(pid)
	if err != nil {
		return "", err
	}
	if _, ok := inj.cgroups[rel]; !ok {
		l, err := link.AttachCgroup(link.CgroupOptions{
			Path:    inj.mount.path(rel),
			Attach:  ebpf.AttachCGroupSockOps,
			Program: inj.objs.InjectSockops,
		})
		if err != nil {
			return "", fmt.Errorf("attaching the sockops program to cgroup %s: %w", rel, err)
		}
		inj.cgroups[rel] = l
	}
	msg := "injecting traceparent with sk_msg on the connections of cgroup " + rel
	n, err := inj.adoptConnections(pid)
	if err != nil {
		return msg + fmt.Sprintf(" (its open connections were not added: %v; their requests count as not_seen)", err), nil
	}
	return msg + fmt.Sprintf(", %d already open", n), nil
}

// Close detaches from every cgroup and unloads the programs. Closing the
// sockhash releases every socket still in it, which returns to the kernel's
// ordinary send path.
func (inj *Injector) Close() error {
	var errs []error
	for _, l := range inj.cgroups {
		errs = append(errs, l.Close())
	}
	inj.cgroups = map[string]link.Link{}
	if inj.msgOn {
		errs = append(errs, link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  inj.objs.InjectSocks.FD(),
			Program: inj.objs.InjectTraceparent,
			Attach:  ebpf.AttachSkMsgVerdict,
		}))
		inj.msgOn = false
	}
	errs = append(errs, inj.objs.Close())
	if inj.mount != nil {
		errs = append(errs, inj.mount.Close())
		inj.mount = nil
	}
	return errors.Join(errs...)
}

func firstLine(err error) error {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return errors.New(s[:i])
	}
	return err
}
