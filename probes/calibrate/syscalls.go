package calibrate

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// SyscallFloor attaches an empty program to the raw sys_enter and sys_exit
// tracepoints, until the returned Closer is closed: the least that any
// capture at the syscall level costs every syscall of every process on this
// kernel (while any program is on those tracepoints, every task takes the
// kernel's slower syscall path, and runs the program).
func SyscallFloor() (io.Closer, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "zt_floor",
		Type:    ebpf.RawTracepoint,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("loading an empty raw tracepoint program: %w", err)
	}
	f := &floor{prog: prog}
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("attaching an empty program to %s: %w", tp, err)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

type floor struct {
	prog  *ebpf.Program
	links []link.Link
}

func (f *floor) Close() error {
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, f.prog.Close())
	return errors.Join(errs...)
}
