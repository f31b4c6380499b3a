#!/usr/bin/env bash
# RL rollouts on a GPU worker: rollouts per second and the share of time the engine waits on the sandbox, for a
# randomly initialised Qwen2.5-VL with the 7B shapes (bf16, transformers backend, the real sandbox), the
# sequential loop (baseline) against the lockstep runner with concurrent sandbox runs, in one process.
#   bash bench/gpu_rl.sh                        # 7B shape on CUDA: 2 prompts x 4 members (estimated ~3 min on an H200)
#   bash bench/gpu_rl.sh --repeat 2             # both ways twice, alternating which goes first
#   TINY=1 bash bench/gpu_rl.sh                 # the same on CPU with the tiny model (a smoke test, ~1 minute)
# Needs only the repo and python with torch, transformers (>= 5), pillow, numpy, pyyaml and opencv (the
# sandbox imports cv2); no network. The sandbox uses bubblewrap when installed, else no isolation (a warning
# says so). The last line of stdout is the JSON of every figure; record them in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export DS_ACCELERATOR=${DS_ACCELERATOR:-cuda}
"$PY" - <<'PYEOF'
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "PIL", "numpy", "yaml", "cv2") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"bench/gpu_rl.sh: missing python modules {missing} (cv2 is opencv-python-headless: the sandbox needs it)")
import torch, transformers
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.cuda.is_available()}", flush=True)
if int(transformers.__version__.split(".")[0]) < 5:
    sys.exit("bench/gpu_rl.sh: transformers >= 5 is needed")
PYEOF
if [ -n "${TINY:-}" ]; then
  export DS_ACCELERATOR=cpu
  exec "$PY" bench/gpu_rl.py --tiny "$@"
fi
exec "$PY" bench/gpu_rl.py "$@"
