#!/usr/bin/env bash
# Prepares the client drivers of the GenAI tests, cached under .cache so that
# a test run never rebuilds them:
#
#   build-genai-clients.sh go    builds tests/genaiapp (openai-go and
#                                anthropic-sdk-go, a module of its own) into
#                                $REPO/.cache/bin/genaiapp; prints its path
#   build-genai-clients.sh node  installs tests/testdata/nodegenai's npm
#                                packages (package-lock.json) with npm ci into
#                                $REPO/.cache/nodegenai/<hash>/; prints the
#                                path of its client.mjs
#
# Each is redone only when its inputs changed: the Go build when the hash of
# tests/genaiapp's go.mod, go.sum and sources (and the Go version) differs
# from the one recorded beside the binary; the npm install when the hash of
# the Node client's files names a directory that is not there yet. A cold Go
# build takes about 3 CPU-minutes (the SDKs are large); the npm install a few
# seconds. The Go module proxy and the npm registry are reached only then.
# Progress goes to stderr; the path is the only thing printed on stdout.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$repo/.cache"

say() { echo "genai-clients: $*" >&2; }

# hash_of FILES...: a short hash of the files' names and contents.
hash_of() {
	local f
	for f in "$@"; do
		printf '%s\n' "${f#"$repo"/}"
		cat "$f"
	done | sha256sum | cut -c1-16
}

build_go() {
	local src="$repo/tests/genaiapp" bin="$cache/bin/genaiapp"
	local want
	want="$( (hash_of "$src/go.mod" "$src/go.sum" "$src"/*.go; go env GOVERSION) | sha256sum | cut -c1-16)"
	mkdir -p "$(dirname "$bin")"
	# Concurrent test binaries serialise here; the first one builds.
	exec 9>"$bin.lock"
	flock 9
	if [[ -x "$bin" && "$(cat "$bin.stamp" 2>/dev/null)" == "$want" ]]; then
		say "genaiapp is up to date"
		echo "$bin"
		return
	fi
	say "building tests/genaiapp into $bin (about 3 CPU-minutes on a cold Go build cache)"
	local start=$SECONDS
	tmp="$bin.tmp.$$"
	trap 'rm -f "${tmp:-}"' EXIT
	# GOWORK=off: no workspace may pull the root module in; GOFLAGS is
	# replaced so that flags meant for the root module do not leak in.
	(cd "$src" && GOWORK=off GOFLAGS=-buildvcs=false go build -o "$tmp" .)
	mv -f "$tmp" "$bin"
	tmp=""
	echo "$want" >"$bin.stamp"
	say "genaiapp built in $((SECONDS - start))s"
	echo "$bin"
}

build_node() {
	local src="$repo/tests/testdata/nodegenai"
	command -v node >/dev/null || { say "node is not installed (scripts/setup.sh installs it)"; exit 1; }
	command -v npm >/dev/null || { say "npm is not installed (scripts/setup.sh installs it)"; exit 1; }
	local dir
	dir="$cache/nodegenai/$(hash_of "$src/package.json" "$src/package-lock.json" "$src/client.mjs")"
	mkdir -p "$cache/nodegenai"
	exec 9>"$cache/nodegenai/.lock"
	flock 9
	if [[ -f "$dir/.ready" ]]; then
		say "nodegenai is up to date"
		echo "$dir/client.mjs"
		return
	fi
	say "installing the Node client's packages into $dir"
	local start=$SECONDS
	rm -rf "$dir"
	mkdir -p "$dir"
	cp "$src/package.json" "$src/package-lock.json" "$src/client.mjs" "$dir/"
	# --ignore-scripts: nothing the packages ship runs at install time.
	(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
	touch "$dir/.ready"
	# Older installs are of no use any more.
	find "$cache/nodegenai" -mindepth 1 -maxdepth 1 -type d ! -path "$dir" -exec rm -rf {} +
	say "nodegenai installed in $((SECONDS - start))s"
	echo "$dir/client.mjs"
}

case "${1:-}" in
go) build_go ;;
node) build_node ;;
*)
	echo "usage: $0 go|node" >&2
	exit 2
	;;
esac
