#!/usr/bin/env bash
# The GPU check of issue 19, for a lent GPU machine, in about 8 minutes: the gpu test tier, then the SFT and RL
# benchmarks, short. Each part has its own time limit and its log under $OUT; a part that fails or times out
# is reported and the next one still runs. The last line is a JSON summary (exit codes, seconds, and the
# benchmarks' own final JSON lines); record the figures in docs/benchmarks.md.
#   bash bench/gpu_check.sh                  # on the GPU machine (repository root, .venv or python3)
#   GPU_CHECK_DRY=1 bash bench/gpu_check.sh  # print the commands only (CPU check of the flow)
# Never runs `make setup` or pip: the machine must already have the environment (torch with CUDA,
# transformers >= 5, deepspeed; flash-attn optional).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PY PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}
SFT_STEPS=${SFT_STEPS:-2}
SUMMARY="$OUT/summary.jsonl"
: > "$SUMMARY"

# name, seconds allowed, command...: runs it with its log in $OUT/<name>.log, appends one summary line
part() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  if [ -n "${GPU_CHECK_DRY:-}" ]; then
    echo "{\"part\": \"$name\", \"rc\": null, \"seconds\": 0, \"dry\": true}" >> "$SUMMARY"
    return 0
  fi
  local started=$SECONDS rc
  timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local last
  last=$(grep -E '^\{' "$OUT/$name.log" | tail -1)
  tail -5 "$OUT/$name.log"
  echo "{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - started)), \"result\": ${last:-null}}" >> "$SUMMARY"
}

"$PY" -c 'import torch; print("cuda", torch.cuda.is_available(), torch.cuda.device_count(), torch.__version__)' \
  || echo "no torch here"
# the gpu test tier (what `make test-gpu` runs, without make's setup step)
part test-gpu 240 bash tests/run_tier.sh gpu "gpu"
# SFT: 7B shapes, ZeRO-2, one GPU, 2 measured steps at 10240 tokens (tokens/s, peak memory, MFU)
part gpu-sft 150 env NPROC=1 PORT=29519 bash bench/gpu_sft.sh --steps "$SFT_STEPS"
# RL: 7B shapes, 2 prompts x 4 members, sequential vs lockstep rollouts, once
part gpu-rl 180 bash bench/gpu_rl.sh --repeat 1
"$PY" - "$SUMMARY" <<'PYEOF'
import json, sys
parts = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(json.dumps({"bench": "gpu_check", "parts": parts, "ok": all(p["rc"] in (0, None) for p in parts)}))
PYEOF
