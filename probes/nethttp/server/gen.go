package server

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go server ../../../bpf/nethttp/server/probe.c
