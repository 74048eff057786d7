// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The record of the TLS plaintext probes (probes/openssl decodes it).
#pragma once

// Its type in event_header: a struct sock_data_event (bpf/syscalls/records.h)
// whose bytes are the plaintext of a TLS connection, read where the program
// hands them to its TLS library or gets them from it.
enum openssl_record {
	EVENT_TLS_DATA = 7,
};
