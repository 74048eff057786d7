package syscalls

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type sock_data_event -type conn_event -type task_event -type syscalls_record -type sock_dir -type sock_proto -type sock_data_flags -type conn_kind -type conn_role -type task_kind -type traced_how -type conn_ends -type conn_owner -type open_conn_bytes -type tgid_word -type genai_loss httpsys ../../bpf/syscalls/syscalls.c
