package server

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type scratch server ../../../bpf/nethttp/server/probe.c
