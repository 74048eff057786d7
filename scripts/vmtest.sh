#!/usr/bin/env bash
# Runs zerotrace's kernel matrix (make vmtest): builds the test payload, runs
# it on every kernel of scripts/vmtest (Debian 5.10, 6.1 and 6.12 under QEMU,
# plus the host kernel), regenerates the "Kernels tested" table of README.md
# from the results, and exits non-zero if any kernel failed.
#
#   scripts/vmtest.sh [vmtest flags...]     e.g. -kernels 6.1,host -keep
#
# Extra arguments go to the runner (go run ./scripts/vmtest, see
# scripts/vmtest/README.md). Results: .cache/vmtest/results.json, with each
# kernel's console, output and returned files under .cache/vmtest/results.d/.
#
# The guests have no Go toolchain, so everything the tests run is built here,
# statically (CGO_ENABLED=0), into .cache/vmtest/payload (fresh every run):
#
#   run                        scripts/vmtest/payload/run
#   prebuilt/zerotrace         ./cmd/zerotrace
#   prebuilt/sampleapp-*       tests/sampleapp, one per toolchain and flags
#   prebuilt/dbapp             tests/dbapp (database/sql sample service)
#   prebuilt/nats-server       scripts/build-program.sh nats-server (a real
#                              program, cached in .cache/bin by setup.sh)
#   tests/verifier.test        go test -c ./tests/verifier
#   tests/e2e.test             go test -c ./tests/e2e
#   tests/kerneltrace.test     go test -c ./tests/kerneltrace
#
# The tests find prebuilt/ through ZEROTRACE_PREBUILT; the sample apps are
# named as testenv.PrebuiltSampleAppName says.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

cache=.cache/vmtest
payload=$cache/payload
results=$cache/results.json
# The second toolchain the end-to-end tests trace (TestHTTPServerSpansGo127
# and TestHTTPServerSpansStripped); it must match the tests.
other_toolchain=go1.27.3

log() { printf '%s vmtest.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Static binaries for a guest without a C library; GOWORK=off keeps a
# workspace file from pulling the separate tests/tools module in.
export CGO_ENABLED=0 GOWORK=off GOOS=linux GOARCH=amd64

start=$(date +%s)
rm -rf "$payload"
mkdir -p "$payload/prebuilt" "$payload/tests"

version="$(git describe --always --dirty 2>/dev/null || echo dev)"
log "building zerotrace ($version)"
go build -ldflags "-X main.version=$version" -o "$payload/prebuilt/zerotrace" ./cmd/zerotrace

# build_sampleapp TOOLCHAIN LDFLAGS NAME: builds tests/sampleapp the way
# testenv.BuildSampleAppWith does, as a standalone module whose go line is
# the chosen toolchain's own version, so that it gets the language version
# and GODEBUG defaults a fresh application built with that toolchain has.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
find tests/sampleapp -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} "$src" \;
build_sampleapp() {
	local toolchain=$1 ldflags=$2 name=$3 goversion
	# The previous build's go.mod could demand a newer Go than this one.
	rm -f "$src/go.mod"
	goversion="$(cd "$src" && GOTOOLCHAIN="$toolchain" go env GOVERSION)"
	goversion="${goversion%% *}"
	printf 'module zerotrace.test/sampleapp\n\ngo %s\n' "${goversion#go}" >"$src/go.mod"
	log "building $name ($goversion, -ldflags='$ldflags')"
	(cd "$src" && GOTOOLCHAIN="$toolchain" go build -ldflags="$ldflags" -o "$repo/$payload/prebuilt/$name" .)
}
# "local" is the toolchain running this script, as "" is in the tests.
build_sampleapp local "" sampleapp-default
build_sampleapp local "-s -w" sampleapp-default-ldflags-s-w
build_sampleapp "$other_toolchain" "" "sampleapp-$other_toolchain"
build_sampleapp "$other_toolchain" "-s -w" "sampleapp-$other_toolchain-ldflags-s-w"

# The database sample app (its own module), for the verifier's database/sql
# programs: testenv.BuildDBApp takes it from prebuilt/.
log "building dbapp"
(cd tests/dbapp && go build -o "$repo/$payload/prebuilt/dbapp" .)

# One real program on every kernel (TestRealNATS): NATS server, the
# smallest of them (25 MB with DWARF), from the cache setup.sh fills; cold,
# build-program.sh builds it in about a minute.
log "building nats-server (scripts/build-program.sh)"
nats_bin="$(scripts/build-program.sh nats-server)"
cp "$nats_bin" "$payload/prebuilt/nats-server"

for pkg in verifier e2e kerneltrace; do
	log "building tests/$pkg.test"
	go test -c -o "$payload/tests/$pkg.test" "./tests/$pkg"
done
cp scripts/vmtest/payload/run "$payload/run"
chmod 755 "$payload/run"
log "payload ready in $(($(date +%s) - start))s: $(du -sh "$payload" | cut -f1)"

# The runner builds the guests' /init for the host, whatever GOOS says.
unset CGO_ENABLED GOOS GOARCH
rm -f "$results"
rc=0
# Guests run under single-threaded TCG (the runner's default, because
# multi-threaded TCG crashed the 6.12 kernel), so each uses one host core:
# -parallel 3 keeps both cores busy for the whole matrix instead of leaving
# one idle while 6.12 runs alone. -timeout: the runner's default (8m per
# kernel, boot included) leaves no margin when three guests share two
# cores; a payload takes 9-12.5 minutes there (TestDetachLeavesNothing
# alone 5-7; 6.1 is the slowest, 734 s of the 840 s a 15m deadline gave it),
# and more when the host is busy (a lone 6.1 guest passed 19 minutes on a
# host loaded by other builds). 30m keeps a third in reserve and the whole
# check inside CI's 90 minutes. Flags given to this script come later and
# win.
go run ./scripts/vmtest -payload "$payload" -out "$results" -parallel 3 -timeout 30m "$@" || rc=$?

# The README table shows the last run, failed or not; without results (the
# runner itself failed) it is left alone.
if [[ -s $results ]]; then
	go run ./scripts/vmtest/readme -results "$results" -readme README.md
	log "README.md kernel table updated from $results"
else
	log "no $results: README.md left as it was"
	[[ $rc -ne 0 ]] || rc=1
fi
log "total $(($(date +%s) - start))s, exit status $rc"
exit $rc
