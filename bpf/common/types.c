// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Owner of the shared maps, and of the types every object shares: the
// record header and the loss counters, which bpf2go generates in Go.

#include "common/kernel.h"
#include "common/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Referenced so that the types reach BTF for bpf2go -type
// (probes/events/gen.go); never used. Each probe's own record is in its own
// folder (bpf/<library>/record.h) and generated there.
struct event_header *unused_event_header __attribute__((unused));
enum counter *unused_counter __attribute__((unused));
