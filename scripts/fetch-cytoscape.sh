#!/usr/bin/env bash
# Refreshes the copy of cytoscape.js (MIT) that the agent's service-map page
# embeds (export/web/static), from npm. The file is committed, so builds need
# no network; run this only to change the version.
set -euo pipefail
version="${1:-3.35.0}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "cytoscape@$version" >/dev/null && tar xzf cytoscape-*.tgz)
cp "$tmp/package/dist/cytoscape.min.js" "$repo/export/web/static/cytoscape.min.js"
cp "$tmp/package/LICENSE" "$repo/export/web/static/cytoscape.LICENSE"
echo "export/web/static: cytoscape $version"
