package client

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go client ../../../bpf/nethttp/client/probe.c
