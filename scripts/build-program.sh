#!/usr/bin/env bash
# Builds one of the real Go programs that tests/e2e/realprogs_test.go traces,
# from the Go module proxy at the version pinned by the tool directive of its
# module under tests/tools (one module per program: their dependency graphs
# would be unified, and broken, in a single module):
#
#   caddy            tests/tools/caddy       github.com/caddyserver/caddy/v2/cmd/caddy
#   caddy-stripped   the same, linked with -ldflags='-s -w' (no symbols, no DWARF)
#   pocketbase       tests/tools/pocketbase  github.com/pocketbase/pocketbase/examples/base
#   nats-server      tests/tools/nats        github.com/nats-io/nats-server/v2
#   jaeger           tests/tools             (scripts/build-jaeger.sh)
#
# Usage: scripts/build-program.sh NAME. The binary is cached at
# $REPO/.cache/bin/NAME and rebuilt only when it is missing or older than its
# module's go.sum (the pinned version changed). A cold build takes one
# (NATS server) to four (PocketBase) minutes on two cores. The binaries are static (no cgo). Progress goes
# to stderr; the binary's absolute path is the only thing printed on stdout.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name=${1:?usage: build-program.sh caddy|caddy-stripped|pocketbase|nats-server|jaeger}
ldflags=""
case $name in
caddy | caddy-stripped)
	dir=caddy module=github.com/caddyserver/caddy/v2 pkg=github.com/caddyserver/caddy/v2/cmd/caddy
	[[ $name == caddy ]] || ldflags="-s -w"
	;;
pocketbase) dir=pocketbase module=github.com/pocketbase/pocketbase pkg=github.com/pocketbase/pocketbase/examples/base ;;
nats-server) dir=nats module=github.com/nats-io/nats-server/v2 pkg=$module ;;
jaeger) exec "$repo/scripts/build-jaeger.sh" ;;
*)
	echo "build-program: unknown program $name" >&2
	exit 2
	;;
esac
mod="$repo/tests/tools/$dir"
bin="$repo/.cache/bin/$name"

up_to_date() {
	[[ -x "$bin" && "$bin" -nt "$mod/go.sum" ]]
}
if up_to_date; then
	echo "$name: cached binary is up to date" >&2
	echo "$bin"
	exit 0
fi
mkdir -p "$(dirname "$bin")"
# Test packages and setup may ask at the same moment: the first builds, the
# others wait and find the fresh binary.
exec 9>"$bin.lock"
flock 9
if up_to_date; then
	echo "$name: built by a concurrent run" >&2
	echo "$bin"
	exit 0
fi
version=$(awk -v m="$module" '$1 == m {print $2}' "$mod/go.mod")
echo "$name: building $pkg $version into $bin (minutes on a cold cache)" >&2
start=$SECONDS
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# As build-jaeger.sh: no workspace, no caller's GOFLAGS, no VCS stamp.
# CGO_ENABLED=0: a static binary, which the kernel matrix's guests (no C
# library) can run too.
(cd "$mod" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false go build -trimpath ${ldflags:+-ldflags="$ldflags"} -o "$tmp" "$pkg")
mv -f "$tmp" "$bin"
echo "$name: built in $((SECONDS - start))s" >&2
echo "$bin"
