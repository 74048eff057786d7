package inject

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go sockmsg ../../bpf/inject/sockmsg.c
