// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Kernel types for CO-RE, from the repository's top-level vmlinux.h, plus the
// libbpf helper headers. -Wpadded is silenced for the kernel's own layouts only.
#pragma once

#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux.h"
#pragma clang diagnostic pop

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
