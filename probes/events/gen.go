package events

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type event_header -type http_server_event -type http_client_event -type db_query_event -type sock_data_event -type conn_event -type task_event common ../../bpf/common/types.c
