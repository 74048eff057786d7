package dbsql

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type db_query_event -type db_query_record -type db_call -type db_truncation dbsql ../../bpf/dbsql/probe.c
