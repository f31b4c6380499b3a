"""Weight sync under DeepSpeed ZeRO-3 on CPU: two ranks (torchrun, gloo) on the tiny Qwen2.5-VL.

Each rank wraps the model in a ZeRO-3 engine (infra/deepspeed/zero3.json, persistence threshold 0 so every
parameter really is partitioned), takes one AdamW step whose loss is built from `sequence_logprobs` over an
input with an image (so the chunked, checkpointed LM head also runs through ZeRO-3's hooks and backward),
then syncs into a plain unpartitioned copy on each rank (the transformers rollout engine) with
`sync_weights(engine, HFSink(copy))`. Checked from what each rank writes:

- only one module's parameters are ever gathered at once during the sync;
- the copy equals DeepSpeed's consolidated state dict (rank 0) and every weight moved in the step;
- the copy's logits, and its log-probs, equal the engine's own forward (both ranks forward: collective).

This file is also the worker script: torchrun runs it with MODEL_DIR IMAGE OUT_DIR. The first DeepSpeed op
build is cached in TORCH_EXTENSIONS_DIR (.cache/torch_extensions).
"""

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from PIL import Image

    from tests.integration.conftest import free_port
    from thyme_core.base.home import DataHome
    from thyme_core.model.tiny import ensure_tiny_model
    from thyme_core.runs.launch import environment

    root = tmp_path_factory.mktemp("rl-sync-zero3")
    model_dir = ensure_tiny_model(DataHome(root / "home").ensure())
    image = root / "sign.png"
    Image.new("RGB", (56, 84), (30, 160, 90)).save(image)
    out = root / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", __file__, str(model_dir), str(image), str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=environment(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    print(f"two-rank ZeRO-3 run: {time.perf_counter() - started:.1f} s")
    return ranks


def test_parameters_are_partitioned_and_gathered_one_module_at_a_time(results):
    for r in results:
        assert r["partitioned_before_sync"] and r["partitioned_after_sync"]
        assert r["max_modules_gathered_at_once"] == 1
        assert r["sync"]["tensors"] == 57 and r["sync"]["bytes"] == r["parameter_bytes"]


def test_synced_copy_equals_the_consolidated_weights_and_every_weight_moved(results):
    rank0 = results[0]
    assert rank0["consolidated_keys_match"] and rank0["consolidated_mismatches"] == []
    for r in results:
        assert r["unchanged_after_step"] == [], r["unchanged_after_step"]
    assert results[0]["copy_digest"] == results[1]["copy_digest"]  # both ranks' copies are the same


def test_copy_forward_equals_the_engine_forward_on_both_ranks(results):
    for r in results:
        assert r["loss_finite"]
        assert r["logits_max_abs_diff"] <= 1e-6, r
        assert r["logprobs_max_abs_diff"] <= 1e-6, r


# ---- the worker (runs under torchrun) -------------------------------------------------------------------

def _zero3_config() -> dict:
    config = json.loads((REPO / "infra" / "deepspeed" / "zero3.json").read_text())
    config.update(train_batch_size=2, train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1,
                  gradient_clipping=1.0)
    config["bf16"] = {"enabled": False}
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0  # partition even tiny tensors
    return config


class GatherWatch:
    """A sink that forwards to HFSink and records how many modules have gathered parameters per write."""

    def __init__(self, inner, module):
        self.inner = inner
        self.owner = {id(p): name for name, sub in module.named_modules() for p in sub.parameters(recurse=False)}
        self.params = list(module.parameters())
        self.most = 0

    def write(self, name, tensor):
        gathered = {self.owner[id(p)] for p in self.params if p.data.numel() > 0}
        self.most = max(self.most, len(gathered))
        self.inner.write(name, tensor)

    def finish(self):
        self.inner.finish()


def _inputs(rollout, image: str, question: str) -> dict:
    """A prompt with the image in the middle and an answer, as the rollout backend builds it."""
    from thyme_core.agent.backends.base import FedImage

    codec = rollout.codec
    ids = (codec.encode(f"<|im_start|>user\n{question}") + [codec.token_id("<|vision_start|>"),
           codec.image_pad_id, codec.token_id("<|vision_end|>")]
           + codec.encode("<|im_end|>\n<|im_start|>assistant\n<answer>green</answer>"))
    return rollout.model_inputs(ids, [FedImage(Path(image), 56, 84)])


def _worker(model_dir: str, image: str, out_dir: str) -> dict:
    import hashlib

    import deepspeed
    import torch

    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.model import load_model, load_processor
    from thyme_core.rl.logprobs import sequence_logprobs
    from thyme_core.rl.sync import HFSink, sync_weights

    deepspeed.init_distributed(dist_backend="gloo")
    rank = torch.distributed.get_rank()
    torch.manual_seed(0)
    policy = load_model(model_dir, dtype=torch.float32)
    rollout = TransformersBackend(load_model(model_dir, dtype=torch.float32), load_processor(model_dir))
    before = {k: v.clone() for k, v in rollout.hf_model.state_dict().items()}
    question = ["What colour is the sign?", "Is the sign green or red?"][rank]  # each rank its own sample
    inputs = _inputs(rollout, image, question)

    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2, weight_decay=0.01)
    engine, _, _, _ = deepspeed.initialize(model=policy, optimizer=optimizer, config=_zero3_config())
    params = list(engine.module.parameters())
    engine.train()
    loss = -sequence_logprobs(engine, inputs, chunk_size=5).mean()
    engine.backward(loss)
    engine.step()
    partitioned_before = all(p.data.numel() == 0 for p in params)

    watch = GatherWatch(HFSink(rollout.hf_model), engine.module)
    stats = sync_weights(engine, watch)
    partitioned_after = all(p.data.numel() == 0 for p in params)
    consolidated = engine._zero3_consolidated_16bit_state_dict()  # collective; the dict on rank 0 only

    copy = rollout.hf_model.state_dict()
    result = {"rank": rank, "sync": stats, "max_modules_gathered_at_once": watch.most,
              "partitioned_before_sync": partitioned_before, "partitioned_after_sync": partitioned_after,
              "parameter_bytes": sum(p.ds_numel * p.element_size() for p in params),
              "loss_finite": bool(torch.isfinite(loss)),
              "unchanged_after_step": [k for k in copy if torch.equal(copy[k], before[k])],
              "copy_digest": hashlib.sha256(b"".join(copy[k].numpy().tobytes() for k in sorted(copy))).hexdigest()}
    if consolidated is not None:
        result["consolidated_keys_match"] = sorted(consolidated) == sorted(copy)
        result["consolidated_mismatches"] = [k for k in consolidated
                                             if not torch.equal(consolidated[k].to(copy[k].dtype), copy[k])]
    engine.eval()
    with torch.no_grad():
        engine_logits = engine.module(**inputs).logits  # a ZeRO-3 forward: every rank takes part
        engine_logp = sequence_logprobs(engine, inputs, chunk_size=5)
        copy_logits = rollout.hf_model(**inputs).logits
        copy_logp = sequence_logprobs(rollout.hf_model, inputs, chunk_size=1000)
    result["logits_max_abs_diff"] = float((engine_logits - copy_logits).abs().max())
    result["logprobs_max_abs_diff"] = float((engine_logp - copy_logp).abs().max())
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        _worker(*sys.argv[1:4])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
