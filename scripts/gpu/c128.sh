#!/usr/bin/env bash
# ON the GPU machine (issue 11): why kvstack's sweep measured ~11% below `vllm bench serve` at c128.
# One server as sweep.sh's; three interleaved triples at c128: vLLM's client with its default sampling
# (what sweep.sh compared: no temperature in its payload), vLLM's client with --temperature 0 (greedy,
# what kvstack sends), and kvstack's sweep at c128 (its process CPU time printed: a client-bound run
# uses about one CPU-second per wall-second). It ran past its 540 s limit once with two default verifies
# after the triples; those are repeat.sh's job now, so this fits one call: a start of 90-150 s, a triple
# about 90 s (vLLM's client spends about 20 s starting, our sweep about 20 s in its batching check).
source scripts/gpu/lib.sh
install_wheels
ARGS=(--max-model-len 16384 --gpu-memory-utilization 0.9 --max-num-seqs 256 --max-num-batched-tokens 8192 --block-size 16)
serve 8000 server-a "${ARGS[@]}"; wait_healthy 8000 server-a || exit 1
EP=http://127.0.0.1:8000
vllm_bench $EP 64 128 warmup > /dev/null
summary() {  # summary TAG: vLLM's result JSON -> one line
  python3 - "$OUT/vllm-bench-$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"[vllm bench {sys.argv[2]}] output {r['output_throughput']:.1f} tok/s, TTFT mean {r['mean_ttft_ms']:.0f} ms, "
      f"TPOT mean {r['mean_tpot_ms']:.2f} ms, in {r['total_input_tokens']} out {r['total_output_tokens']}, {r['duration']:.2f} s")
PY
}
TIMEFORMAT='[kvstack cpu] wall %R s, user %U s, sys %S s'
for pair in 1 2 3; do
  vllm_bench $EP 128 384 "c128-default-$pair" > /dev/null; summary "c128-default-$pair"
  VB_EXTRA=(--temperature 0); vllm_bench $EP 128 384 "c128-greedy-$pair" > /dev/null; VB_EXTRA=(); summary "c128-greedy-$pair"
  time kvstack verify --endpoint $EP --sweep-levels 128 --sweep-rounds 3 --min-phase-seconds 0 \
    --prompt-tokens 160 --output-tokens 256 --no-use-cases --no-plots --quiet --out "/tmp/ours-$pair" > /dev/null 2>&1
  sweep_levels "/tmp/ours-$pair/verify-report.json" "$pair"
  cp "/tmp/ours-$pair/verify-report.json" "$OUT/c128-kvstack-$pair.json"
done
stop server-a
