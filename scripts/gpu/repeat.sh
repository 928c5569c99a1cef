#!/usr/bin/env bash
# ON the GPU machine (issue 11): how repeatable verify's figures are, and the baseline gate across restarts.
# PART=a: one server; verify with the defaults once and with --min-phase-seconds 4 twice, back to back
#         (def-2 and long-2 are kept as the baselines of part b).
# PART=b: the server restarted identically: verify --min-phase-seconds 4 and the defaults, each with
#         --baseline; then restarted with --max-num-seqs 32: verify --min-phase-seconds 4 --baseline.
# Written when the default phase was 1.5 s; since it is 4 s, "def" and "long" run the same settings.
source scripts/gpu/lib.sh
install_wheels
EP=http://127.0.0.1:8000
ARGS=(--max-model-len 16384 --gpu-memory-utilization 0.9 --max-num-batched-tokens 8192 --block-size 16)
STACK=(--max-num-seqs 256 --slo-ttft-ms 2000 --slo-itl-ms 50)
run() {  # run TAG EXTRA...: verify against $EP, report kept as $OUT/TAG.json, its summary lines printed
  local tag=$1; shift; local t0=$SECONDS
  kvstack verify --endpoint $EP "${STACK[@]}" "$@" --no-plots --out "/tmp/$tag" --quiet > "$OUT/$tag.txt" 2>&1
  local rc=$?
  cp "/tmp/$tag/verify-report.json" "$OUT/$tag.json" 2>/dev/null
  python3 - "$OUT/$tag.json" "$tag" "$rc" "$((SECONDS - t0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sweep = next(c for c in r["checks"] if c["name"] == "sweep")
lv = " ".join(f"c{x['concurrency']}:{x['output_throughput']:.0f}/{x['ttft']['p50_ms']:.0f}" for x in sweep["figures"]["levels"])
print(f"[{sys.argv[2]}] exit {sys.argv[3]} in {sys.argv[4]} s; level:tok/s/TTFTp50ms {lv}")
PY
  grep -E "regressed|YES|  no " "$OUT/$tag.txt" | grep -vE "━" | head -9
}
if [ "${PART:-a}" = a ]; then
  serve 8000 server-a "${ARGS[@]}" --max-num-seqs 256; wait_healthy 8000 server-a || exit 1
  run def-2; run long-1 --min-phase-seconds 4; run long-2 --min-phase-seconds 4
  cp "$OUT/def-2.json" /root/stash/base-def.json; cp "$OUT/long-2.json" /root/stash/base-long.json
  stop server-a
else
  serve 8000 server-same "${ARGS[@]}" --max-num-seqs 256; wait_healthy 8000 server-same || exit 1
  run same-long --min-phase-seconds 4 --baseline /root/stash/base-long.json
  run same-def --baseline /root/stash/base-def.json
  stop server-same; [ "${SKIP_WORSE:-0}" = 1 ] && exit 0
  serve 8000 server-worse "${ARGS[@]}" --max-num-seqs 32; wait_healthy 8000 server-worse || exit 1
  run worse-long --min-phase-seconds 4 --baseline /root/stash/base-long.json
  stop server-worse
fi
