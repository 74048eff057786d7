package goroutines

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go goroutines ../../../bpf/runtime/goroutines/probe.c
