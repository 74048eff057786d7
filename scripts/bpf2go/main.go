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
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	cmd := exec.Command("go", cmdArgs...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(cmdArgs, " "), err)
	}
	return nil
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
