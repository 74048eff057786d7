package phases

//go:generate go run github.com/zerotrace/zerotrace/scripts/bpf2go -type phase_event -type phase_record -type phase_end -type phase_info -type phase_counter phases ../../bpf/phases/probe.c
