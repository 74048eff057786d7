// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Finding the W3C trace context headers of an incoming request in its
// http.Header, a map[string][]string.
//
// Since Go 1.24 maps are Swiss tables (internal/runtime/maps): a map of up
// to 8 entries is a single group (dirLen == 0, dirPtr points at it); a
// larger one has a directory of dirLen *table, each with a power-of-two
// array of groups. A group is 8 control bytes followed by 8 slots; a slot
// holds the key and the element inline. Control byte bit 7 clear means the
// slot is in use. Hashing a key needs the map's seed and the runtime's hash
// function, so instead the groups are scanned: header maps are small.
//
// Keys are compared without regard to case (see key_is).
#pragma once

volatile const __u64 off_req_header;
volatile const __u64 off_map_dir_ptr;
volatile const __u64 off_map_dir_len;
volatile const __u64 off_table_groups;
volatile const __u64 off_groups_data;
volatile const __u64 off_groups_length_mask;

// Slot layout for map[string][]string: key string (16 bytes), then the
// []string element (24 bytes).
#define HDR_SLOTS 8
#define HDR_SLOT_SIZE 40
#define HDR_GROUP_SIZE (8 + HDR_SLOTS * HDR_SLOT_SIZE)
// Bounds of the scan. A table holds up to 1024 slots before the map splits
// it, so a header map has one table unless it holds hundreds of headers;
// 16 groups cover a table of 128 slots, about 110 headers. A larger map is
// scanned in part and its traceparent may be missed.
#define HDR_MAX_GROUPS 16

#define TRACEPARENT_LEN 55 // "00-" 32 hex "-" 16 hex "-" 2 hex

struct trace_headers {
	struct go_string traceparent;
	struct go_string tracestate;
};

struct header_scratch {
	__u8 group[HDR_GROUP_SIZE];
	char key[16];
	char value[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct header_scratch);
} header_scratch SEC(".maps");

// Compare a key with want (lower case), ignoring ASCII case: net/textproto
// canonicalises the names of parsed headers ("Traceparent"), but a client
// can put any spelling into its own header map.
static __always_inline bool key_is(const char *k, const char *want, int n)
{
	for (int i = 0; i < n; i++)
		if ((k[i] | 0x20) != want[i])
			return false;
	return true;
}

// First value of the header whose slot element (a []string) is at elem.
static __always_inline void first_value(struct go_string *out, const __u8 *elem)
{
	struct go_slice values;

	__builtin_memcpy(&values, elem, sizeof(values));
	if (values.len < 1 || !values.ptr)
		return;
	bpf_probe_read_user(out, sizeof(*out), (void *)values.ptr);
}

static __always_inline void scan_group(__u64 group, struct header_scratch *s, struct trace_headers *found)
{
	__u64 ctrl;
	if (bpf_probe_read_user(s->group, sizeof(s->group), (void *)group)) {
		// The group can run onto a page the Go runtime never touched:
		// memory fresh from the OS is already zero, so empty slots are
		// never written, and a page that holds only those is not mapped
		// in yet, which makes the whole read fail. Read the control word
		// and then each full slot: a full slot was written, so its pages
		// are there. Empty slots keep stale scratch bytes, but they are
		// skipped by their control byte below.
		if (bpf_probe_read_user(&ctrl, sizeof(ctrl), (void *)group))
			return;
		__builtin_memcpy(s->group, &ctrl, sizeof(ctrl));
#pragma unroll
		for (int i = 0; i < HDR_SLOTS; i++) {
			if ((ctrl >> (8 * i)) & 0x80)
				continue;
			bpf_probe_read_user(s->group + 8 + i * HDR_SLOT_SIZE, HDR_SLOT_SIZE,
					    (void *)(group + 8 + i * HDR_SLOT_SIZE));
		}
	}
	__builtin_memcpy(&ctrl, s->group, sizeof(ctrl));
#pragma unroll
	for (int i = 0; i < HDR_SLOTS; i++) {
		if ((ctrl >> (8 * i)) & 0x80)
			continue; // empty or deleted
		struct go_string key;
		__builtin_memcpy(&key, s->group + 8 + i * HDR_SLOT_SIZE, sizeof(key));
		if (key.len == 11) {
			if (bpf_probe_read_user(s->key, 11, (void *)key.ptr) || !key_is(s->key, "traceparent", 11))
				continue;
			first_value(&found->traceparent, s->group + 8 + i * HDR_SLOT_SIZE + 16);
		} else if (key.len == 10) {
			if (bpf_probe_read_user(s->key, 10, (void *)key.ptr) || !key_is(s->key, "tracestate", 10))
				continue;
			first_value(&found->tracestate, s->group + 8 + i * HDR_SLOT_SIZE + 16);
		}
	}
}

// Find the Traceparent and Tracestate headers in the http.Header map m.
static __always_inline void find_trace_headers_in(__u64 m, struct header_scratch *s, struct trace_headers *found)
{
	if (!m)
		return;
	__u64 dir;
	__s64 dir_len;
	// dirPtr and dirLen are adjacent on every Go version we know: one
	// read instead of two; otherwise read them apart.
	if (off_map_dir_len == off_map_dir_ptr + 8) {
		struct {
			__u64 ptr;
			__s64 len;
		} d;
		if (bpf_probe_read_user(&d, sizeof(d), (void *)(m + off_map_dir_ptr)))
			return;
		dir = d.ptr;
		dir_len = d.len;
	} else {
		dir = read_u64(m + off_map_dir_ptr);
		dir_len = read_u64(m + off_map_dir_len);
	}
	if (!dir)
		return;
	if (dir_len == 0) {
		scan_group(dir, s, found);
		return;
	}
	// The first table only (see HDR_MAX_GROUPS).
	__u64 table = read_u64(dir);
	if (!table)
		return;
	__u64 groups = read_u64(table + off_table_groups + off_groups_data);
	__u64 mask = read_u64(table + off_table_groups + off_groups_length_mask);
	for (int g = 0; g < HDR_MAX_GROUPS && g <= mask; g++)
		scan_group(groups + g * HDR_GROUP_SIZE, s, found);
}

// Find the Traceparent and Tracestate headers of the request at req.
static __always_inline void find_trace_headers(__u64 req, struct header_scratch *s, struct trace_headers *found)
{
	find_trace_headers_in(read_u64(req + off_req_header), s, found);
}

static __always_inline int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; // W3C allows lowercase hex only
}

// Decode n bytes of lowercase hex from src into dst; false on a bad digit.
static __always_inline bool decode_hex(__u8 *dst, const char *src, int n)
{
	for (int i = 0; i < n; i++) {
		int hi = hex_nibble(src[2 * i]), lo = hex_nibble(src[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		dst[i] = hi << 4 | lo;
	}
	return true;
}

static __always_inline bool all_zero(const __u8 *b, int n)
{
	for (int i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

// Parse a traceparent value into ids: its trace id becomes ours, its span
// id our parent. Returns false, leaving ids alone, for anything invalid.
static __always_inline bool parse_traceparent(struct go_string v, struct header_scratch *s, struct span_ids *ids)
{
	// Version 00 is exactly 55 characters; later versions may append
	// fields after a '-'.
	if (v.len < TRACEPARENT_LEN || !v.ptr)
		return false;
	// A later version may append fields, separated by a '-'.
	bool longer = v.len > TRACEPARENT_LEN;
	if (bpf_probe_read_user(s->value, TRACEPARENT_LEN, (void *)v.ptr))
		return false;
	// Never past the string's end: the byte after it may be unmapped.
	s->value[TRACEPARENT_LEN] = 0;
	if (longer && bpf_probe_read_user(&s->value[TRACEPARENT_LEN], 1, (void *)(v.ptr + TRACEPARENT_LEN)))
		return false;
	char *p = s->value;
	if (p[2] != '-' || p[35] != '-' || p[52] != '-' || (longer && p[55] != '-'))
		return false;
	__u8 version;
	if (!decode_hex(&version, p, 1) || version == 0xff || (version == 0 && longer))
		return false;
	__u8 trace_id[16], span_id[8];
	if (!decode_hex(trace_id, p + 3, 16) || !decode_hex(span_id, p + 36, 8))
		return false;
	__u8 flags;
	if (!decode_hex(&flags, p + 53, 1))
		return false;
	if (all_zero(trace_id, 16) || all_zero(span_id, 8))
		return false;
	__builtin_memcpy(ids->trace_id, trace_id, 16);
	__builtin_memcpy(ids->parent_id, span_id, 8);
	return true;
}
