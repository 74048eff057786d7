package dbsql

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go dbsql ../../bpf/dbsql/probe.c
