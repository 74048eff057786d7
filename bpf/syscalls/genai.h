// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Model calls (descriptors marked FD_GENAI, http.h's looks_like_genai): how
// much of their bodies goes to user space, and a count of what did not.
//
// Every read or write of a model call's body gets a record, so that user
// space can follow the HTTP framing and the stream's end however much of it
// is copied. What a record copies: the first SOCK_DATA_MAX bytes of the
// segment, and, for a segment longer than that, its last SOCK_DATA_MAX bytes
// in a record of their own sent just before (*_TAIL), while the exchange's
// budget lasts. The bytes in between, and what the budget refuses, are
// counted (genai_losses), and user space marks the span's body truncated.
#pragma once

#include "syscalls/traced.h"

// Bytes of a model call's bodies copied per exchange, besides the request's
// and the response's head records. The request's budget covers the first
// bytes of its body's reads or writes: the SDKs send a request in one or a
// few writes (one record and one tail each), and a 2 MB prompt read in
// 64 KiB pieces copies its first 16 KiB; the tails of a request's segments
// are not charged, since its last one is where the model's name is found
// when the prompt comes first (a tail costs at most a record per segment
// longer than one). The response's budget covers both: a streamed answer's
// events are small (100-400 bytes each, one or a few per read), so 256 KiB
// follows about a thousand of them whole, a long answer; a longer stream
// keeps its records' lengths (its framing and end) and loses its last
// events' content, counted. A non-streamed answer's fields are at its start
// (id, model) and end (usage, finish reason): its head and tail records.
#define GENAI_REQUEST_BUDGET (16U << 10)
#define GENAI_RESPONSE_BUDGET (256U << 10)

// A model call's copy so far, on one descriptor.
struct genai_budget {
	__u32 request;  // body bytes of the request copied
	__u32 response; // body bytes of the response copied
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct fd_key);
	__type(value, struct genai_budget);
} genai_budgets SEC(".maps");

// What the budgets and the records' sizes left out of model calls' bodies
// (genai_losses' indexes; user space shows them on /metrics).
enum genai_loss {
	GENAI_LOSS_BYTES = 0,    // body bytes not copied
	GENAI_LOSS_SEGMENTS = 1, // reads or writes of which some bytes were not copied
	GENAI_LOSS_MAX = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GENAI_LOSS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} genai_losses SEC(".maps");

// Counts bytes of a model call's segment that were not copied.
static __always_inline void genai_lost(__u64 bytes)
{
	if (!bytes)
		return;
	__u32 key = GENAI_LOSS_BYTES;
	__u64 *v = bpf_map_lookup_elem(&genai_losses, &key);
	if (v)
		*v += bytes;
	key = GENAI_LOSS_SEGMENTS;
	v = bpf_map_lookup_elem(&genai_losses, &key);
	if (v)
		*v += 1;
}

// A model call starts on descriptor k: its budgets are whole again.
static __always_inline void genai_start(const struct fd_key *k)
{
	struct genai_budget b = {};
	bpf_map_update_elem(&genai_budgets, k, &b, BPF_ANY);
}

// How many of want bytes the budget of the model call on k still allows
// (its response's, or its request's), which it then holds as copied. A call
// whose start was not seen (made before the agent attached, or its entry
// evicted) has no budget: nothing is copied. Two threads copying on one
// descriptor at once may overrun it by a record; nothing else depends on it.
static __always_inline __u64 genai_take(const struct fd_key *k, bool response, __u64 want)
{
	struct genai_budget *b = bpf_map_lookup_elem(&genai_budgets, k);
	if (!b)
		return 0;
	__u32 used = response ? b->response : b->request;
	__u32 budget = response ? GENAI_RESPONSE_BUDGET : GENAI_REQUEST_BUDGET;
	__u64 left = used < budget ? budget - used : 0;
	if (want > left)
		want = left;
	if (response)
		b->response = used + want;
	else
		b->request = used + want;
	return want;
}
