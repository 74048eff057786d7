package syscalls

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3 -I../../bpf -I../.." -no-global-types -target amd64 httpsys ../../bpf/syscalls/http.c
