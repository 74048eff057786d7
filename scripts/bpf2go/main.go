// Command bpf2go compiles one BPF object of zerotrace with cilium/ebpf's
// bpf2go, with the compiler, flags and target every object shares. It is
// what each gen.go's go:generate line runs, from the package directory:
//
//	//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go [-type T]... <ident> <source.c>
//
// Arguments are passed on to bpf2go after the shared ones, so any bpf2go
// option may be added (-type, most often). The compiler is $BPF2GO_CC,
// clang-19 when unset: the version the committed objects were built with,
// so that regenerating them changes nothing. Include paths are bpf/ and the
// module root (for vmlinux.h), given relative to the package directory as
// they always were, since the objects record the paths they were built
// from.
//
// The compiler runs in one directory wherever the repository is: clang-19
// numbers an object's BTF types differently when the real path of its
// sources differs in length (measured: the same commit generated in clones
// at /tmp/c2 and /work/main gives one object, at /tmp/clone-abcdefghijklmnop
// and /work/wt-kclient another; a symlink does not help, clang resolves
// it), so an object regenerated in a clone elsewhere would differ from the
// committed one. So the sources (bpf/, vmlinux.h, and go.mod and go.sum for
// `go tool bpf2go`) are copied to /tmp/zerotrace-bpf2go/m, the object is
// generated there under a lock (another clone may be generating at the same
// time), and what bpf2go wrote is copied back to the package directory.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// cflags are the compiler flags of every object: warnings are errors and
// struct padding must be explicit (-Wpadded), so that the Go twins bpf2go
// generates match the C layout byte for byte; -mcpu=v3 for the 32-bit jumps
// and atomics the verifier-friendly code relies on.
const cflags = "-O2 -g -Wall -Werror -Wpadded -mcpu=v3"

// defaultCC is the compiler when $BPF2GO_CC is not set.
const defaultCC = "clang-19"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bpf2go:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: bpf2go [bpf2go options] <ident> <source.c>")
	}
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := moduleRoot(dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, root)
	if err != nil {
		return err
	}
	cc := os.Getenv("BPF2GO_CC")
	if cc == "" {
		cc = defaultCC
	}
	flags := strings.Join([]string{cflags, "-I" + filepath.Join(rel, "bpf"), "-I" + rel}, " ")
	cmdArgs := append([]string{"tool", "bpf2go", "-cc", cc, "-cflags", flags, "-no-global-types", "-target", "amd64"}, args...)
	return inStableCopy(root, dir, func(pkgDir string) error {
		cmd := exec.Command("go", cmdArgs...)
		cmd.Dir = pkgDir
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %w", strings.Join(cmdArgs, " "), err)
		}
		return nil
	})
}

// stableBase is the directory every object is compiled in.
const stableBase = "/tmp/zerotrace-bpf2go"

// inStableCopy runs build in the copy of the package directory dir (of the
// module at root) under stableBase, then copies the files it wrote there
// back to dir.
func inStableCopy(root, dir string, build func(pkgDir string) error) error {
	lock, err := os.OpenFile(stableBase+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("locking the build directory: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking the build directory: %w", err)
	}
	defer os.RemoveAll(stableBase)
	// A run killed before its cleanup leaves its copy behind: the lock
	// says nobody uses it now.
	if err := os.RemoveAll(stableBase); err != nil {
		return err
	}
	mirror := filepath.Join(stableBase, "m")
	if err := os.CopyFS(filepath.Join(mirror, "bpf"), os.DirFS(filepath.Join(root, "bpf"))); err != nil {
		return fmt.Errorf("copying the sources to %s: %w", mirror, err)
	}
	for _, name := range []string{"go.mod", "go.sum", "vmlinux.h"} {
		if err := copyFile(filepath.Join(root, name), filepath.Join(mirror, name)); err != nil {
			return fmt.Errorf("copying the sources to %s: %w", mirror, err)
		}
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	pkgDir := filepath.Join(mirror, rel)
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		return err
	}
	if err := build(pkgDir); err != nil {
		return err
	}
	out, err := os.ReadDir(pkgDir)
	if err != nil {
		return err
	}
	for _, e := range out {
		if err := copyFile(filepath.Join(pkgDir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("copying %s back: %w", e.Name(), err)
		}
	}
	return nil
}

// copyFile copies the regular file from to the path to.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// moduleRoot is the nearest directory at or above dir holding go.mod.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}
