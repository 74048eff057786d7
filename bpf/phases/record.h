// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The record of the phases probe (probes/phases decodes it).
#pragma once

#include "common/event.h"

// Its type in event_header.
enum phase_record {
	EVENT_PHASE = 20,
};

// How a phase ended.
enum phase_end {
	// One of its RET instructions ran: it returned.
	PHASE_END_RETURN = 0,
	// It was abandoned: the goroutine went on at or above its frame
	// without returning through it (a panic that unwound it and was
	// recovered further up). Its end is when that was noticed.
	PHASE_END_UNWOUND = 1,
	// The request served on its goroutine ended, or the goroutine exited
	// (runtime.Goexit, a panic recovered by net/http), while it was open.
	PHASE_END_REQUEST = 2,
};

// Bits of phase_event.info.
enum phase_info {
	// Calls nested deeper than the stack the probe keeps per goroutine
	// were not traced while this phase was open.
	PHASE_INFO_OVERFLOW = 1 << 0,
};

// One call of a function the configuration names, sent when it ends.
struct phase_event {
	struct event_header hdr; // hdr.ts_ns is when it ended
	__u64 start_ns;
	__u64 goid;
	struct span_ids ids;
	__u32 func;  // the phase's number, as user space gave it (phase_sites)
	__u8 end;    // enum phase_end
	__u8 depth;  // phases open below it on its goroutine when it started
	__u8 info;   // enum phase_info
	__u8 pad;
};
