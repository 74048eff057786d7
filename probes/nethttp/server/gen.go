package server

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type scratch -type http_server_event -type http_server_record -type http_server_info server ../../../bpf/nethttp/server/probe.c
