#!/usr/bin/env bash
# Sourced ON the lent GPU machine (after the shared kit's install-on-device.sh put vLLM 0.26.0 into
# /root/site). Starts and stops vLLM servers of a dummy-weight Llama shape on 127.0.0.1 and runs
# kvstack's own code from the repo checkout that travels with the call.
set -u
export PYTHONPATH="$PWD:/tmp/site:/root/site" HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SHAPE=${SHAPE:-llama8b}
VB_EXTRA=()

install_wheels() {  # the carried wheels (.whl-small: httpx-aiohttp, orjson, setproctitle; .whl-router)
  local dirs=(); for d in .whl-small .whl-router; do [ -d "$d" ] && dirs+=("$d"/*.whl); done
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "${dirs[@]}" \
    2>&1 | grep -v WARNING || true
}

# serve PORT NAME ARGS...: start a server in the background (log $OUT/NAME.log), pid in /tmp/NAME.pid
serve() {
  local port=$1 name=$2; shift 2
  python3 -m vllm.entrypoints.openai.api_server --model "/root/stash/$SHAPE" --served-model-name "$SHAPE" \
    --load-format dummy --host 127.0.0.1 --port "$port" "$@" > "$OUT/$name.log" 2>&1 &
  echo $! > "/tmp/$name.pid"
}

# wait_healthy PORT NAME [SECONDS]
wait_healthy() {
  local port=$1 name=$2 limit=${3:-400} t0=$SECONDS
  while (( SECONDS - t0 < limit )); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && { echo "$name healthy after $((SECONDS - t0)) s"; return 0; }
    kill -0 "$(cat /tmp/$name.pid)" 2>/dev/null || { echo "$name exited"; tail -30 "$OUT/$name.log"; return 1; }
    sleep 1
  done
  echo "$name not healthy after $limit s"; return 1
}

stop() {  # stop NAME: SIGTERM, wait for the port to close
  local pid; pid=$(cat "/tmp/$1.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null; for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  kill -9 "$pid" 2>/dev/null; sleep 2
}

kvstack() { python3 -m kvstack "$@"; }

# sweep_levels REPORT TAG: one line per sweep level of a kvstack verify report
sweep_levels() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sweep = next(c for c in r["checks"] if c["name"] == "sweep")
for lv in sweep["figures"]["levels"]:
    print(f"[kvstack {sys.argv[2]} c{lv['concurrency']}] output {lv['output_throughput']:.1f} tok/s, TTFT mean "
          f"{lv['ttft']['mean_ms']:.0f} ms, TPOT mean {lv['tpot']['mean_ms']:.2f} ms, {lv['requests']} requests "
          f"in {lv['wall_s']:.2f} s")
PY
}

# vllm_bench URL CONCURRENCY PROMPTS TAG: vLLM's own client, random 160 in / 256 out, ignore_eos
# (VB_EXTRA=(...) adds flags, e.g. --temperature 0)
vllm_bench() {
  python3 -m vllm.entrypoints.cli.main bench serve --backend vllm --base-url "$1" --model "$SHAPE" \
    --tokenizer "/root/stash/$SHAPE" --dataset-name random --random-input-len 160 --random-output-len 256 \
    --ignore-eos --num-prompts "$3" --max-concurrency "$2" --request-rate inf "${VB_EXTRA[@]}" \
    --save-result --result-dir "$OUT" --result-filename "vllm-bench-$4.json" > "$OUT/vllm-bench-$4.log" 2>&1
  grep -E "Output token throughput" "$OUT/vllm-bench-$4.log" | sed "s/^/[vllm bench $4] /"
}
