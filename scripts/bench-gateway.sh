#!/usr/bin/env bash
# bench-gateway.sh measures, side by side in one run on loopback, requests
# per second and p50/p99 latency at 1 and 50 connections for:
#   direct    the echo member itself
#   minproxy  a minimal httputil.ReverseProxy with a fixed upstream
#   gateway   the Tidepool gateway (routing, stats, metrics included)
# It runs the dev stack with a one-member pool (jobspecs/examples/bench.pool.hcl).
# Every load run is bounded: DURATION seconds (default 10) each.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}

command -v wrk >/dev/null || { echo "bench: wrk is missing: apt-get install wrk" >&2; exit 1; }
make -s build agents >/dev/null

log=$(mktemp)
bin/tidepool-dev -bin-dir bin -pool jobspecs/examples/bench.pool.hcl >"$log" 2>&1 &
dev=$!
minproxy=
cleanup() {
  [ -n "$minproxy" ] && kill "$minproxy" 2>/dev/null || true
  kill -INT "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 180); do
  grep -q "stack is up" "$log" && break
  kill -0 "$dev" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 1
done
grep -q "stack is up" "$log" || { echo "bench: the dev stack did not come up" >&2; cat "$log" >&2; exit 1; }

export TIDEPOOL_TOKEN
TIDEPOOL_TOKEN=$(cat .dev/token)
member=$(bin/tidepool pool status -json bench | grep -o '"address": "[^"]*"' | head -1 | cut -d'"' -f4)
[ -n "$member" ] || { echo "bench: no member address" >&2; exit 1; }
bin/tidepool-minproxy -listen 127.0.0.1:4690 -upstream "$member" &
minproxy=$!
sleep 1

run() { # name conns url [header]
  local name=$1 conns=$2 url=$3 threads=1 out
  [ "$conns" -gt 1 ] && threads=2
  if [ $# -ge 4 ]; then
    out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -H "$4" "$url")
  else
    out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency "$url")
  fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "bench: $name had errors:" >&2
    grep "Non-2xx\|Socket errors" <<<"$out" >&2
  fi
  printf '| %-8s | %5s | %10s | %8s | %8s |\n' "$name" "$conns" "$rps" "$p50" "$p99"
}

echo "| target   | conns |      req/s |      p50 |      p99 |"
echo "|----------|-------|------------|----------|----------|"
for conns in 1 50; do
  run direct "$conns" "http://$member/hello"
  run minproxy "$conns" "http://127.0.0.1:4690/hello"
  run gateway "$conns" "http://127.0.0.1:4681/hello" "Host: admin--bench--8080.localhost"
done
