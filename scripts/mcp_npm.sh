#!/usr/bin/env bash
# Installs the MCP tools nobody here wrote (from the npm registry) into a cache folder that the
# MCP proxy tests (tests/mcp_proxy, nox session "mcp_npm") and CI reuse: a second run with the
# same versions does nothing. Prints the folder; exits 0 without npm (the tests then skip).
#   bash scripts/mcp_npm.sh            -> .cache/npm under the repository
#   THOTH_NPM_CACHE=/some/dir bash scripts/mcp_npm.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${THOTH_NPM_CACHE:-$root/.cache/npm}
packages=(
  "@modelcontextprotocol/server-everything"
  # 0.1.13: the last release that runs on Node 20 (later ones need Node 22's fs.globSync)
  "@modelcontextprotocol/conformance@0.1.13"
  "@modelcontextprotocol/inspector-cli"
)
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the MCP npm tests will skip" >&2
  exit 0
fi
mkdir -p "$prefix"
missing=()
for p in "${packages[@]}"; do
  name=${p%@*}; [ -z "$name" ] && name=$p  # "@scope/pkg@1.2" -> "@scope/pkg"; "@scope/pkg" stays
  want=${p#"$name"}; want=${want#@}
  file="$prefix/node_modules/$name/package.json"
  if [ ! -f "$file" ] || { [ -n "$want" ] && ! grep -q "\"version\": \"$want\"" "$file"; }; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> npm install into $prefix: ${missing[*]}" >&2
  npm install --no-audit --no-fund --loglevel=error --prefix "$prefix" "${missing[@]}" >&2
fi
echo "$prefix"
