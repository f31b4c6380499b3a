#!/usr/bin/env bash
# SFT throughput on a GPU worker: tokens/s, peak memory and MFU of a randomly initialised Qwen2.5-VL at
# Thyme's sequence length (10240) and max_pixels (3211264), ZeRO-2, frozen ViT, gradient checkpointing, bf16.
#   bash bench/gpu_sft.sh                 # 7B on every visible GPU
#   SIZE=3b NPROC=1 bash bench/gpu_sft.sh # 3B on one GPU
#   SIZE=tiny bash bench/gpu_sft.sh       # CPU smoke test of the same path
# Prints one JSON line per run (rank 0); record the figures in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZE=${SIZE:-7b}
if [ "$SIZE" = tiny ]; then
  export DS_ACCELERATOR=cpu
  NPROC=${NPROC:-1}
  EXTRA=(--seq 512 --max-pixels 12544 --steps 2)
else
  NPROC=${NPROC:-$("$PY" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
  EXTRA=()
fi
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$PY" -m torch.distributed.run --nproc_per_node="$NPROC" --master_addr=127.0.0.1 --master_port="${PORT:-29517}" \
  bench/gpu_sft.py --size "$SIZE" "${EXTRA[@]}" "$@"
