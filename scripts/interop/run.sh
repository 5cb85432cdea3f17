#!/bin/sh
# Go <-> Trailmark interoperability (golang.org/x/mod/sumdb/note and sumdb/tlog). See README.md.
#
#   scripts/interop/run.sh gen     regenerate packages/tlog/test/vectors/go-interop/fixtures.json with Go
#   scripts/interop/run.sh check   Trailmark -> Go: generate keys/notes/proofs with trailmark and check them in Go
#   scripts/interop/run.sh         both
#
# Needs Go (>= 1.19) and x/mod; offline builds use Debian's golang-golang-x-mod-dev (see go/go.mod).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
mode=${1:-all}
case "$mode" in gen|check|all) ;; *) echo "usage: $0 [gen|check|all]" >&2; exit 2 ;; esac

export GOFLAGS=-mod=mod GOPROXY=off
tmp=$(mktemp -d "${TMPDIR:-/tmp}/trailmark-interop.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

(cd "$root/scripts/interop/go" && go build -o "$tmp/interop" .)

if [ "$mode" != check ]; then
  "$tmp/interop" gen -o "$root/packages/tlog/test/vectors/go-interop/fixtures.json"
fi
if [ "$mode" != gen ]; then
  (cd "$root" && npx tsc -b)
  (cd "$root" && node --import=tsx scripts/interop/gen-trailmark.ts "$tmp/trailmark.json")
  "$tmp/interop" check -i "$tmp/trailmark.json"
fi
