#!/usr/bin/env bash
# ON the GPU machine (issue 11): one server as the H200 reference (max-model-len 16384, max-num-seqs 256);
# 1) kvstack verify with its defaults (+ what the stack outputs would give: max_num_seqs and the SLO),
#    timed; its report is kept as the baseline of baseline.sh; 2) interleaved against vllm bench serve
#    at c32, c128, c256, 3 pairs (theirs, ours, ...).
source scripts/gpu/lib.sh
install_wheels
ARGS=(--max-model-len 16384 --gpu-memory-utilization 0.9 --max-num-seqs 256 --max-num-batched-tokens 8192 --block-size 16)
serve 8000 server-a "${ARGS[@]}"; wait_healthy 8000 server-a || exit 1
EP=http://127.0.0.1:8000
STACK=(--max-num-seqs 256 --slo-ttft-ms 2000 --slo-itl-ms 50)
t0=$SECONDS
kvstack verify --endpoint $EP "${STACK[@]}" --out "$OUT/verify-defaults" --quiet > "$OUT/verify-defaults.txt" 2>&1
echo "verify defaults: exit $? in $((SECONDS - t0)) s"; tail -40 "$OUT/verify-defaults.txt"
cp "$OUT/verify-defaults/verify-report.json" /root/stash/baseline-report.json
cp "$OUT/verify-defaults/verify-report.json" "$OUT/verify-defaults.json"
vllm_bench $EP 64 128 warmup > /dev/null
for pair in 1 2 3; do
  for c in 32 128 256; do vllm_bench $EP $c $((3 * c)) "c$c-$pair"; done
  t0=$SECONDS
  kvstack verify --endpoint $EP --sweep-levels 32,128,256 --sweep-rounds 3 --min-phase-seconds 0 \
    --prompt-tokens 160 --output-tokens 256 --no-use-cases --no-plots --quiet --out "/tmp/ours-$pair" > /dev/null 2>&1
  sweep_levels "/tmp/ours-$pair/verify-report.json" "$pair"
  cp "/tmp/ours-$pair/verify-report.json" "$OUT/verify-interleave-$pair.json"
done
stop server-a
