package client

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type scratch client ../../../bpf/nethttp/client/probe.c
