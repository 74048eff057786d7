package events

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type event_header -type counter common ../../bpf/common/types.c
