#!/usr/bin/env bash
# Runs ON the lent GPU machine, after ../shared/gpu's kit installed vLLM 0.26.0 into /root/site and
# serve-on-device.sh started it on 127.0.0.1:8000 (see docs/gpu.md). Compares `kvstack verify`'s
# concurrency sweep with `vllm bench serve` on the same server, same workload shape:
# random ~160-token prompts, 256 output tokens with ignore_eos, N = rounds x concurrency requests.
# usage: gpu_compare.sh SHAPE [ROUNDS]   (writes into $OUT)
set -euo pipefail
shape=${1:-llama8b}
rounds=${2:-5}
out=${OUT:-/tmp/out}
mkdir -p "$out" /root/extra
# the device image has httpx and aiohttp but not httpx-aiohttp: carried as a wheel in /root/stash
python3 -m pip install -q --no-index --no-deps --target /root/extra /root/stash/httpx_aiohttp-*.whl
export PYTHONPATH="$PWD:/root/site:/root/extra" HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

vllm_bench() {  # concurrency
  python3 -m vllm.entrypoints.cli.main bench serve --backend vllm --base-url http://127.0.0.1:8000 \
    --model "$shape" --tokenizer "/root/stash/$shape" --dataset-name random \
    --random-input-len 160 --random-output-len 256 --ignore-eos \
    --num-prompts $(( rounds * $1 )) --max-concurrency "$1" --request-rate inf \
    --save-result --result-dir "$out" --result-filename "vllm-bench-c$1.json" 2>&1 \
    | grep -E "Output token throughput|Mean TTFT|Mean TPOT|Successful requests|Benchmark duration" \
    | sed "s/^/[vllm bench c$1] /"
}

echo "== warm-up (first requests pay for compilation and graph capture)"
vllm_bench 32 > /dev/null
echo "== kvstack verify, sweep 1,8,32,128"
python3 -m kvstack verify --endpoint http://127.0.0.1:8000 --out "$out/verify" --no-plots \
  --sweep-levels 1,8,32,128 --sweep-rounds "$rounds" --prompt-tokens 160 --output-tokens 256 \
  --prefix-tokens 1300 --expected-block-size 16 2>&1 | tail -60 || true
echo "== vllm bench serve"
vllm_bench 32
vllm_bench 128
echo "== kvstack verify again (order effects)"
python3 -m kvstack verify --endpoint http://127.0.0.1:8000 --out "$out/verify2" --no-plots --no-use-cases \
  --sweep-levels 32,128 --sweep-rounds "$rounds" --prompt-tokens 160 --output-tokens 256 \
  --prefix-tokens 1300 --expected-block-size 16 2>&1 | grep -A 8 "concurrency sweep" || true
