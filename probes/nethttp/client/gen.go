package client

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type scratch -type http_client_event -type http_client_record -type http_client_info -type http_client_body -type http_client_body_record -type http_client_body_flags -type http_client_h2_stream -type http_client_h2_stream_record -type genai_suffix client ../../../bpf/nethttp/client/probe.c
