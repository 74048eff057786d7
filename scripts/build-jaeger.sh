#!/usr/bin/env bash
# Builds the Jaeger all-in-one (v2, OTel-collector based) that the end-to-end
# tests export spans to. The version is pinned by the tool directive in
# tests/tools/go.mod, a module separate from the root one so that Jaeger's
# very large dependency graph never leaks into the tracer's go.mod.
#
# The binary is cached at $JAEGER_BIN (default: $REPO/.cache/bin/jaeger) and
# rebuilt only when it is missing or older than tests/tools/go.sum, i.e. when
# the pinned version changed. Progress goes to stderr; the binary's absolute
# path is the only thing printed on stdout so that callers can capture it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/tests/tools"
bin="${JAEGER_BIN:-$repo/.cache/bin/jaeger}"

# A relative JAEGER_BIN would be resolved against the tools module directory
# by "go build -o" below; resolve it against the caller's directory instead.
case "$bin" in
/*) ;;
*) bin="$PWD/$bin" ;;
esac

up_to_date() {
	[[ -x "$bin" && "$bin" -nt "$tools/go.sum" ]]
}

if up_to_date; then
	echo "jaeger: cached binary is up to date" >&2
	echo "$bin"
	exit 0
fi

mkdir -p "$(dirname "$bin")"

# Several test binaries may call this script at the same moment ("go test
# ./..." runs packages in parallel). Serialise them on a lock file so that the
# first one builds and the others find the fresh binary afterwards.
exec 9>"$bin.lock"
flock 9
if up_to_date; then
	echo "jaeger: built by a concurrent run" >&2
	echo "$bin"
	exit 0
fi

echo "jaeger: building $(awk '$1 == "github.com/jaegertracing/jaeger" {print $2}' "$tools/go.mod") into $bin (a few minutes on a cold cache)" >&2
start=$SECONDS
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# GOWORK=off: a go.work somewhere above must not pull this module into a
# workspace with the root module. GOFLAGS is replaced so that a caller's -mod,
# -tags or -race meant for the root module does not leak into this build;
# -buildvcs=false because the module has no VCS stamp worth embedding.
(cd "$tools" && GOWORK=off GOFLAGS=-buildvcs=false go build -trimpath -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
# Rename into place so that a reader never sees a half-written binary.
mv -f "$tmp" "$bin"
echo "jaeger: built in $((SECONDS - start))s" >&2
echo "$bin"
