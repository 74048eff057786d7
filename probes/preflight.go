package probes

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Linux capability numbers not named by every x/sys/unix release.
const (
	capSysPtrace = 19
	capSysAdmin  = 21
	capPerfmon   = 38
	capBPF       = 39
)

var capNames = map[int]string{
	capSysPtrace: "CAP_SYS_PTRACE",
	capSysAdmin:  "CAP_SYS_ADMIN",
	capPerfmon:   "CAP_PERFMON",
	capBPF:       "CAP_BPF",
}

// CheckPrivileges reports which capabilities the agent lacks. It needs to
// load BPF programs (CAP_BPF, or CAP_SYS_ADMIN on kernels before 5.8),
// attach uprobes through perf events (CAP_PERFMON or CAP_SYS_ADMIN) and
// inspect other users' processes through /proc (CAP_SYS_PTRACE).
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading the process capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(uint(c)%32)) != 0 }

	var missing []string
	if !has(capSysAdmin) {
		for _, c := range []int{capBPF, capPerfmon} {
			if !has(c) {
				missing = append(missing, capNames[c])
			}
		}
	}
	if !has(capSysPtrace) {
		missing = append(missing, capNames[capSysPtrace])
	}
	if len(missing) == 0 {
		return nil
	}
	who := "run as root"
	if os.Geteuid() == 0 {
		who = "root without them (a restricted container?)"
	}
	return fmt.Errorf("missing capabilities %s: zerotrace needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (now %s)",
		strings.Join(missing, ", "), strings.TrimPrefix(who, "run as "))
}

// CheckKernel reports a missing kernel feature the agent cannot work without:
// BTF (for CO-RE), BPF ring buffers (Linux 5.8) and the uprobe perf event
// source. Call it after CheckPrivileges: probing features loads programs.
func CheckKernel() error {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return fmt.Errorf("the kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("the kernel has no BPF ring buffer (needs Linux 5.8 or later): %w", err)
		}
		return fmt.Errorf("probing for BPF ring buffer support: %w", err)
	}
	if _, err := os.Stat("/sys/bus/event_source/devices/uprobe/type"); err != nil {
		return fmt.Errorf("the kernel has no uprobe event source (CONFIG_UPROBE_EVENTS): %w", err)
	}
	return nil
}
