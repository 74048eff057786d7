package syscalls

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go httpsys ../../bpf/syscalls/syscalls.c
