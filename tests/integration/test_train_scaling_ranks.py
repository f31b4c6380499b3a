"""SFT loss scaling across ranks: 2 ranks x 1 micro-batch under real torchrun (gloo, DeepSpeed ZeRO-2) give the
loss and the gradient of one big batch of the same 2 examples (unequal label counts), as
tests/unit/test_train_scaling.py checks for 1 rank x 2 micro-batches. Each rank writes minus its weight change
(SGD at lr 1, no clipping: the applied gradient); rank 0's is compared with the one-process reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import REPO
from tests.unit.test_train_scaling import assert_same_update, big_batch_reference, free_port, tiny_setup

RANK_SCRIPT = '''
import json, sys, torch
from pathlib import Path
import deepspeed
from tests.unit.test_train_scaling import deepspeed_step, tiny_setup
root = Path(sys.argv[1])
deepspeed.init_distributed(dist_backend="gloo")
rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
folder, processor, examples = tiny_setup(root)
metrics, applied = deepspeed_step(folder, processor, examples[:2], world=world, rank=rank, micro=1, run_dir=root)
if rank == 0:
    torch.save({"metrics": metrics, "applied": applied}, root / "rank0.pt")
torch.distributed.destroy_process_group()
'''


def test_two_ranks_of_one_micro_batch_give_the_big_batch_update(tmp_path):
    folder, processor, examples = tiny_setup(tmp_path)  # builds the tiny model once, before the ranks read it
    env = {**os.environ, "PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))}
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = torch.load(tmp_path / "rank0.pt", weights_only=False)
    loss, grads = big_batch_reference(folder, processor, examples[:2])
    assert got["metrics"]["label_tokens"] == sum(e.n_label_tokens for e in examples[:2])
    assert_same_update(got["metrics"], got["applied"], loss, grads)
