#!/usr/bin/env bash
# ON the GPU machine (issue 9): two vLLM replicas sharing the GPU behind vllm-router 0.1.17; the routing
# check per policy, and the router's cost (one engine behind the router vs the same engine direct, c64).
source scripts/gpu/lib.sh
install_wheels
ARGS=(--max-model-len 8192 --gpu-memory-utilization 0.45 --block-size 16)
serve 8001 engine-1 "${ARGS[@]}"; sleep 20; serve 8002 engine-2 "${ARGS[@]}"
wait_healthy 8001 engine-1 || exit 1; wait_healthy 8002 engine-2 || exit 1
router() {  # router POLICY PORT WORKERS...
  local policy=$1 port=$2; shift 2
  python3 -c "from vllm_router.launch_router import main; main()" --worker-urls "$@" --policy "$policy" \
    --host 127.0.0.1 --port "$port" --prometheus-host 127.0.0.1 --prometheus-port $((port + 1)) \
    > "$OUT/router-$policy-$port.log" 2>&1 &
  echo $! > "/tmp/router-$port.pid"
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$port/readiness" >/dev/null && return 0; sleep 1; done
  echo "router $policy not ready"; tail -20 "$OUT/router-$policy-$port.log"; return 1
}
W=(http://127.0.0.1:8001 http://127.0.0.1:8002)
for policy in consistent_hash round_robin cache_aware; do
  router $policy 8100 "${W[@]}" || continue
  t0=$SECONDS
  kvstack verify --endpoint http://127.0.0.1:8100 --engine-metrics http://127.0.0.1:8001/metrics \
    --engine-metrics http://127.0.0.1:8002/metrics --config scripts/gpu/fleet-verify.yaml \
    --out "$OUT/fleet-$policy" --quiet > "$OUT/fleet-$policy.txt" 2>&1
  echo "verify through $policy: exit $? in $((SECONDS - t0)) s"; grep -iE "routing|prefix" "$OUT/fleet-$policy.txt" | head -6
  cp "$OUT/fleet-$policy/verify-report.json" "$OUT/fleet-$policy.json"
  kill "$(cat /tmp/router-8100.pid)"; sleep 3
done
[ "${ROUTER_COST:-1}" = 1 ] || { stop engine-1; stop engine-2; exit 0; }
# the router's cost: engine 1 alone behind a router vs direct, interleaved
router round_robin 8200 http://127.0.0.1:8001 || exit 1
vllm_bench http://127.0.0.1:8001 64 128 warm > /dev/null
for pair in 1 2; do
  vllm_bench http://127.0.0.1:8001 64 192 "direct-c64-$pair"
  vllm_bench http://127.0.0.1:8200 64 192 "router-c64-$pair"
done
