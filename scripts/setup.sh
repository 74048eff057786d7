#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine that has only Go for zerotrace's builds
# and tests: Debian packages (BPF toolchain, QEMU for kernel-matrix tests, load
# generator, PostgreSQL for database tests), the bpffs mount the tests need,
# the Jaeger binary the end-to-end tests export to, the real programs
# (Caddy, PocketBase, NATS server) that tests/e2e/realprogs_test.go traces,
# and the GenAI tests' client drivers (scripts/build-genai-clients.sh).
#
# Idempotent and quick when there is nothing to do: packages are installed
# (and apt-get update run) only when one is missing, mounts are made only
# when absent, and Jaeger and the GenAI clients are rebuilt only when stale.
# Prints one line per step; on failure prints the failing command's output
# and exits non-zero.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# clang-19/llvm-19: bpf2go compiles the BPF C (there is no plain "clang").
# libbpf-dev: bpf_helpers.h and friends. bpftool: vmlinux.h and inspection.
# qemu-system-x86, cpio: booting other kernels for the kernel-matrix tests;
# busybox-static: the guests' shell and tools; xz-utils: decompressing the
# .ko.xz modules of Debian's newer kernels (trixie) for them.
# wrk: load for benchmarks. iproute2: ss, ip and tc for network tests.
# postgresql: a real server (initdb, postgres, psql) that the database/sql
# tracing tests start per test (tests/internal/postgres).
# python3 and nodejs: the non-Go backends the kernel-level tracing tests call;
# python3-psycopg2, redis-server (with python3-redis) and mariadb-server (with
# python3-pymysql): the databases that backend talks to, recognised by their
# wire protocol (the tests run their own servers; nothing is started here).
# chromium: renders the service map page headless in the tests.
packages=(clang-19 llvm-19 libbpf-dev bpftool qemu-system-x86 cpio busybox-static xz-utils wrk iproute2 postgresql python3 nodejs python3-psycopg2 redis-server python3-redis mariadb-server python3-pymysql chromium)

# npm installs the Node GenAI test client's packages. Machines whose nodejs
# comes from elsewhere (NodeSource's bundles npm) already have it; Debian's
# nodejs needs Debian's npm package, which would conflict with the others.
if ! command -v npm >/dev/null; then
	packages+=(npm)
fi

step() { printf 'setup: %-10s %s\n' "$1:" "$2"; }
die() {
	printf 'setup: FAILED: %s\n' "$*" >&2
	exit 1
}

# Runs a command with its output captured, showing the output only when the
# command fails, so that a successful run stays one line per step.
quiet() {
	local log
	log="$(mktemp)"
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, mounts filesystems)"
command -v go >/dev/null || die "go is not on PATH"
step go "$(go version)"

missing=()
for p in "${packages[@]}"; do
	# dpkg-query fails for unknown packages; "install ok installed" is the
	# only status that means usable (not e.g. "deinstall ok config-files").
	if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
	step packages "all installed (${packages[*]})"
else
	step packages "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for a concurrent apt/dpkg instead of failing on its lock.
	apt_opts=(-o DPkg::Lock::Timeout=300)
	quiet apt-get "${apt_opts[@]}" update || die "apt-get update failed"
	quiet apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
	for p in "${missing[@]}"; do
		[[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] ||
			die "package $p is still not installed after apt-get install"
	done
	step packages "installed ${missing[*]}"
fi

# mount_fs TYPE DIR NAME: mounts a pseudo-filesystem of TYPE at DIR unless a
# filesystem of that type is already mounted there. bpffs is not mounted at
# boot on these machines. (tracefs is not needed: the agent's syscall and
# sched programs attach through BTF.)
mount_fs() {
	local type=$1 dir=$2 name=$3
	if awk -v d="$dir" -v t="$type" '$2 == d && $3 == t { found = 1 } END { exit !found }' /proc/mounts; then
		step "$name" "already mounted at $dir"
		return
	fi
	mkdir -p "$dir"
	quiet mount -t "$type" "$type" "$dir" || die "mount -t $type $dir failed"
	step "$name" "mounted at $dir"
}
mount_fs bpf /sys/fs/bpf bpffs

# build-jaeger.sh prints progress on stderr and the binary path on stdout.
jaeger_log="$(mktemp)"
if ! jaeger_bin="$("$repo/scripts/build-jaeger.sh" 2>"$jaeger_log")"; then
	cat "$jaeger_log" >&2
	rm -f "$jaeger_log"
	die "scripts/build-jaeger.sh failed"
fi
step jaeger "$jaeger_bin ($(tail -n 1 "$jaeger_log" | sed 's/^jaeger: //'))"
rm -f "$jaeger_log"

# The real programs tests/e2e/realprogs_test.go traces (and the memory phase
# of make bench), built from the module proxy at the versions pinned under
# tests/tools and cached like Jaeger. Cold, on two cores, they take about
# seven minutes together (PocketBase half of it); cached, nothing.
for prog in nats-server caddy caddy-stripped pocketbase; do
	prog_log="$(mktemp)"
	if ! prog_bin="$("$repo/scripts/build-program.sh" "$prog" 2>"$prog_log")"; then
		cat "$prog_log" >&2
		rm -f "$prog_log"
		die "scripts/build-program.sh $prog failed"
	fi
	step "$prog" "$prog_bin ($(tail -n 1 "$prog_log" | sed "s/^$prog: //"))"
	rm -f "$prog_log"
done

# The GenAI tests' client drivers: the Go one (official SDKs, a cold build of
# about 3 CPU-minutes) and the Node one's npm packages, cached under .cache.
genai_log="$(mktemp)"
for client in go:genaiapp node:nodegenai; do
	which=${client%%:*}
	if ! genai_path="$("$repo/scripts/build-genai-clients.sh" "$which" 2>"$genai_log")"; then
		cat "$genai_log" >&2
		rm -f "$genai_log"
		die "scripts/build-genai-clients.sh $which failed"
	fi
	step "${client#*:}" "$genai_path ($(tail -n 1 "$genai_log" | sed 's/^genai-clients: //'))"
done
rm -f "$genai_log"

step done "ready"
