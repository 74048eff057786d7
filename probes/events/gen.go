package events

// The cflags are shared by every probe; keep them in step with every gen.go under probes/.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3 -I../../bpf -I../.." -no-global-types -target amd64 -type event_header -type http_server_event -type http_client_event -type db_query_event -type sock_data_event -type conn_event -type task_event common ../../bpf/common/types.c
