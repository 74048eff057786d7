package openssl

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type openssl_record openssl ../../bpf/openssl/openssl.c
