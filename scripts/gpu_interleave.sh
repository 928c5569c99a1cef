#!/usr/bin/env bash
# Runs ON the lent GPU machine after gpu_compare.sh's set-up (server up on :8000): repeats the
# comparison interleaved (ours, vLLM's, ours, vLLM's, ours) to separate client from run-to-run noise.
set -euo pipefail
shape=${1:-llama8b}; rounds=${2:-5}; out=${OUT:-/tmp/out}
export PYTHONPATH="$PWD:/root/site:/root/extra" HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
ours() {
  python3 -m kvstack verify --endpoint http://127.0.0.1:8000 --out "/tmp/verify-$1" --no-plots --no-use-cases \
    --prompts 16 --sweep-levels 32,128 --sweep-rounds "$rounds" --prompt-tokens 160 --output-tokens 256 \
    --prefix-tokens 1300 2>&1 | grep -E "^│ +(32|128) " | sed "s/^/[kvstack $1] /"
  cp "/tmp/verify-$1/verify-report.json" "$out/verify-report-$1.json"
}
theirs() {
  for c in 32 128; do
    python3 -m vllm.entrypoints.cli.main bench serve --backend vllm --base-url http://127.0.0.1:8000 \
      --model "$shape" --tokenizer "/root/stash/$shape" --dataset-name random \
      --random-input-len 160 --random-output-len 256 --ignore-eos \
      --num-prompts $(( rounds * c )) --max-concurrency "$c" --request-rate inf 2>&1 \
      | grep -E "Output token throughput" | sed "s/^/[vllm bench $1 c$c] /"
  done
}
theirs warmup > /dev/null
ours 1; theirs 1; ours 2; theirs 2; ours 3
