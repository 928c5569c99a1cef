#!/usr/bin/env bash
# How h100-vllm-0.26.0-memory-profile.txt was made. Runs ON the lent GPU machine after the kit of
# shared/gpu/README.md is installed there (it uses its serve-on-device.sh): several vLLM start-ups in a
# row, keeping each server's DEBUG log and its vllm:cache_config_info line under $OUT. Used as
#   bash tests/infra/data/measure-kv-on-device.sh \
#     "A:llama8b:--max-model-len,8192,--gpu-memory-utilization,0.9" \
#     "B:llama8b:--max-model-len,8192,--gpu-memory-utilization,0.9,--max-num-batched-tokens,2048,--max-num-seqs,256" \
#     "C:llama1b:--max-model-len,4096,--gpu-memory-utilization,0.5"
set -u
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.csv"
PYTHONPATH=/root/site python3 -c "import torch; f,t=torch.cuda.mem_get_info(); print('mem_get_info', f, t, t/2**30)" >> "$OUT/gpu.csv"
run() {
  tag=$1; shift
  start=$(date +%s)
  VLLM_LOGGING_LEVEL=DEBUG bash /root/stash/serve-on-device.sh "$@"
  echo "$tag rc=$? took $(( $(date +%s) - start ))s" >> "$OUT/summary.txt"
  curl -s http://127.0.0.1:8000/metrics | grep -E "^vllm:cache_config_info" > "$OUT/$tag.metrics"
  cp "$OUT/vllm-server.log" "$OUT/$tag.log"
  pid=$(cat /root/stash/server.pid)
  kill "$pid" 2>/dev/null
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null
  pkill -9 -P "$pid" 2>/dev/null
  for i in $(seq 1 30); do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    [ "$used" -lt 2000 ] && break; sleep 1
  done
  echo "$tag gpu used after stop: $used MiB" >> "$OUT/summary.txt"
}
for spec in "$@"; do
  # spec: tag:shape:extra args (comma separated)
  IFS=: read -r tag shape extra <<< "$spec"
  run "$tag" "$shape" ${extra//,/ }
done
rm -f "$OUT/vllm-server.log"
