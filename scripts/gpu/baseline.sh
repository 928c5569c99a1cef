#!/usr/bin/env bash
# ON the GPU machine (issue 11), after sweep.sh on the same machine: the server restarted identically and
# restarted with --max-num-seqs 32; verify with sweep.sh's defaults on each. With --baseline support in
# the tree (BASELINE=1) the gate runs there; without it the reports are compared afterwards.
source scripts/gpu/lib.sh
install_wheels
EP=http://127.0.0.1:8000
[ -n "${BASELINE_FILE:-}" ] && cp "$BASELINE_FILE" /root/stash/baseline-report.json
if [ ! -f /root/stash/baseline-report.json ]; then  # a fresh machine: the baseline run first
  ARGS=(--max-model-len 16384 --gpu-memory-utilization 0.9 --max-num-batched-tokens 8192 --block-size 16 --max-num-seqs 256)
  serve 8000 server-base "${ARGS[@]}"; wait_healthy 8000 server-base || exit 1
  kvstack verify --endpoint $EP --max-num-seqs 256 --slo-ttft-ms 2000 --slo-itl-ms 50 --out "$OUT/verify-base" \
    --quiet > "$OUT/verify-base.txt" 2>&1; echo "baseline run: exit $?"
  cp "$OUT/verify-base/verify-report.json" /root/stash/baseline-report.json; stop server-base
fi
STACK=(--max-num-seqs 256 --slo-ttft-ms 2000 --slo-itl-ms 50)
for variant in same worse; do
  ARGS=(--max-model-len 16384 --gpu-memory-utilization 0.9 --max-num-batched-tokens 8192 --block-size 16)
  if [ $variant = same ]; then ARGS+=(--max-num-seqs 256); else ARGS+=(--max-num-seqs 32); fi
  serve 8000 server-$variant "${ARGS[@]}"; wait_healthy 8000 server-$variant || exit 1
  t0=$SECONDS
  GATE=(); [ "${BASELINE:-0}" = 1 ] && GATE=(--baseline /root/stash/baseline-report.json)
  kvstack verify --endpoint $EP "${STACK[@]}" "${GATE[@]}" \
    --out "$OUT/verify-$variant" --quiet > "$OUT/verify-$variant.txt" 2>&1
  echo "verify ($variant server): exit $? in $((SECONDS - t0)) s"; tail -30 "$OUT/verify-$variant.txt"
  cp "$OUT/verify-$variant/verify-report.json" "$OUT/verify-baseline-$variant.json"
  stop server-$variant
done
