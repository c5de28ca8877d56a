#!/usr/bin/env bash
# check.sh enforces what the compiler does not: go.mod is tidy, and the
# gateway shares nothing with the controller but domain types (plugin/pool).
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
module=$(sed -n 's/^module //p' go.mod)

# 1. go.mod and go.sum are tidy.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp go.mod go.sum "$tmp/"
go mod tidy
if ! diff -u "$tmp/go.mod" go.mod || ! diff -u "$tmp/go.sum" go.sum; then
  echo "check: go.mod/go.sum are not tidy (run 'go mod tidy' and commit)" >&2
  cp "$tmp/go.mod" "$tmp/go.sum" .
  fail=1
fi

# 2. Import boundaries, on the real import graph (tests included).
deps() { go list -deps -test -f '{{.ImportPath}}' "$@" 2>/dev/null | sort -u; }
bad=$(deps ./gateway/... | grep "^$module/plugin/" | grep -v "^$module/plugin/pool\(/\|\$\)" || true)
if [ -n "$bad" ]; then
  echo "check: gateway/ must import only plugin/pool from the controller, but depends on:" >&2
  echo "$bad" | sed 's/^/  /' >&2
  fail=1
fi
# Tests may use the test harness; production code may not.
bad=$(go list -deps -f '{{.ImportPath}}' ./plugin/... ./gateway/... | grep "^$module/\(cmd/\|e2e/\|internal/devcluster\)" || true)
if [ -n "$bad" ]; then
  echo "check: plugin/ and gateway/ code must not import cmd/, e2e/ or internal/devcluster:" >&2
  echo "$bad" | sed 's/^/  /' >&2
  fail=1
fi

[ $fail -eq 0 ] && echo "check: ok"
exit $fail
