package probes

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Target is a running process to trace and what was learnt about its binary.
type Target struct {
	PID int
	// Exe is the executable's path as the process sees it, for messages.
	Exe string
	// ProbePath is the path uprobes are attached through. /proc/PID/exe
	// resolves to the very inode the process runs, even across mount
	// namespaces and after the file was replaced on disk.
	ProbePath string
	Bin       *gobin.Binary
	Offsets   offsets.Set
	// LoadBias is what to add to an address from the binary to get its
	// address in the running process: zero unless it is a PIE.
	LoadBias uint64
}

// ErrNoProcess is returned for a PID with no running process.
var ErrNoProcess = errors.New("no such process")

// OpenTarget inspects the process pid. Errors name the PID and executable
// and say what is wrong in one line.
func OpenTarget(pid int) (*Target, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: not a valid process id", pid)
	}
	procExe := "/proc/" + strconv.Itoa(pid) + "/exe"
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	}
	exe, err := os.Readlink(procExe)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("pid %d: cannot read %s: permission denied (tracing another user's process needs root or CAP_SYS_PTRACE)", pid, procExe)
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ESRCH):
			// Kernel threads have no executable; a process that just
			// exited looks the same.
			return nil, fmt.Errorf("pid %d: has no executable (a kernel thread or a process that exited)", pid)
		}
		return nil, fmt.Errorf("pid %d: reading %s: %w", pid, procExe, err)
	}
	bin, err := binaries.open(procExe)
	if err != nil {
		if errors.Is(err, gobin.ErrNotGo) {
			return nil, fmt.Errorf("pid %d (%s): %w; only Go programs can be traced with uprobes", pid, exe, gobin.ErrNotGo)
		}
		return nil, fmt.Errorf("pid %d (%s): %w", pid, exe, err)
	}
	bias, err := loadBias(pid, procExe)
	if err != nil {
		binaries.release(bin)
		return nil, fmt.Errorf("pid %d (%s): %w", pid, exe, err)
	}
	return &Target{PID: pid, Exe: exe, ProbePath: procExe, Bin: bin, LoadBias: bias}, nil
}

// binaries shares one gobin.Binary between the traced processes that run
// the same executable file, so that a service with many workers, or a
// binary deployed as several services, is parsed once and its answers
// (functions, struct offsets, itabs) are held once.
var binaries = binaryTable{byID: map[fileID]*sharedBinary{}}

// fileID identifies an executable file's contents: the same inode on the
// same device, not modified since (a binary rebuilt in place keeps its
// inode but not its size and time).
type fileID struct {
	dev, ino    uint64
	size, mtime int64
}

type sharedBinary struct {
	bin  *gobin.Binary
	id   fileID
	refs int
}

type binaryTable struct {
	mu    sync.Mutex
	byID  map[fileID]*sharedBinary
	byBin map[*gobin.Binary]*sharedBinary
}

// open returns the binary behind path (a /proc/PID/exe link), opened once
// per executable file and counted: release it when done.
func (bt *binaryTable) open(path string) (*gobin.Binary, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return gobin.Open(path)
	}
	id := fileID{dev: sys.Dev, ino: sys.Ino, size: st.Size(), mtime: st.ModTime().UnixNano()}
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if sb, ok := bt.byID[id]; ok {
		sb.refs++
		return sb.bin, nil
	}
	bin, err := gobin.Open(path)
	if err != nil {
		return nil, err
	}
	sb := &sharedBinary{bin: bin, id: id, refs: 1}
	bt.byID[id] = sb
	if bt.byBin == nil {
		bt.byBin = map[*gobin.Binary]*sharedBinary{}
	}
	bt.byBin[bin] = sb
	return bin, nil
}

// release gives back one reference to bin, closing it with the last.
func (bt *binaryTable) release(bin *gobin.Binary) error {
	bt.mu.Lock()
	sb, ok := bt.byBin[bin]
	if ok {
		sb.refs--
		if sb.refs > 0 {
			bt.mu.Unlock()
			return nil
		}
		delete(bt.byBin, bin)
		delete(bt.byID, sb.id)
	}
	bt.mu.Unlock()
	return bin.Close()
}

// Shared tells how many targets share t's binary (1 when only t).
func (t *Target) Shared() int {
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if sb, ok := binaries.byBin[t.Bin]; ok {
		return sb.refs
	}
	return 1
}

// ReleaseTables drops what planning needed and tracing does not: the
// tables the binary built to answer the planner (it keeps the answers, so
// attaching and further processes of the same executable need no table,
// and the itab index the span decoders use). Call it once the target is
// planned.
func (t *Target) ReleaseTables() {
	t.Bin.IndexItabs()
	t.Bin.Release()
}

// loadBias finds where a position-independent executable was loaded, from
// the first mapping of the executable in /proc/PID/maps.
func loadBias(pid int, exePath string) (uint64, error) {
	f, err := elf.Open(exePath)
	if err != nil {
		return 0, fmt.Errorf("reading ELF header: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_DYN {
		return 0, nil
	}
	var minVaddr uint64 = math.MaxUint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < minVaddr {
			minVaddr = p.Vaddr &^ (uint64(os.Getpagesize()) - 1)
		}
	}
	st, err := os.Stat(exePath)
	if err != nil {
		return 0, err
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	maps, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return 0, fmt.Errorf("reading memory map: %w", err)
	}
	// Lines: "start-end perms offset dev inode path".
	for _, line := range strings.Split(string(maps), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 || fields[2] != "00000000" || fields[4] != strconv.FormatUint(ino, 10) {
			continue
		}
		startStr, _, _ := strings.Cut(fields[0], "-")
		start, err := strconv.ParseUint(startStr, 16, 64)
		if err != nil {
			continue
		}
		return start - minVaddr, nil
	}
	return 0, fmt.Errorf("position-independent executable not found in /proc/%d/maps", pid)
}

// RuntimeAddr converts an address from the binary to the running process.
func (t *Target) RuntimeAddr(addr uint64) uint64 { return addr + t.LoadBias }

// FuncAddr is the run-time address of the named function, or 0 when the
// binary has none: probes pass it as a constant in which 0 turns off the
// reads that depend on it.
func (t *Target) FuncAddr(name string) uint64 {
	fn, err := t.Bin.Func(name)
	if err != nil {
		return 0
	}
	return t.RuntimeAddr(fn.Addr)
}

// TCPConnClose is net.(*TCPConn).Close. fun[0] of a net.Conn itab is Close,
// so an itab whose fun[0] is this function holds a *net.TCPConn: that is how
// the probes recognise a plain TCP connection behind a net.Conn.
const TCPConnClose = "net.(*TCPConn).Close"

// String names the target in messages.
func (t *Target) String() string {
	return fmt.Sprintf("pid %d (%s)", t.PID, t.Exe)
}

// Close releases the binary; the target must not be used afterwards.
func (t *Target) Close() error {
	if t.Bin == nil {
		return nil
	}
	bin := t.Bin
	t.Bin = nil
	return binaries.release(bin)
}
