"""SFT loss scaling: one optimizer step over micro-batches with unequal label counts gives the loss and the
gradient of one big batch (the mean NLL over every label token), whatever the split.

Checked on a real DeepSpeed ZeRO-2 engine (gloo, CPU), with plain SGD at lr 1 and no clipping so the weight
change IS minus the gradient DeepSpeed applied (Adam or clipping would hide a scale factor): here 1 rank x 2
micro-batches (gradient accumulation); tests/integration/test_train_scaling_ranks.py runs 2 ranks x 1
micro-batch under torchrun with the same helpers. A dropped accumulation or world factor, or a per-micro-batch
mean instead of the per-token one, moves the gradient by a factor of 2 or by the label-count imbalance.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from thyme_core.sft.batching import BatchPlan
from thyme_core.sft.examples import IGNORE, ExampleOptions, build_examples

# 4 answers of very different lengths: the micro-batches' label counts differ (a per-micro-batch mean is wrong)
RESPONSES = ["<think>Red.</think>\n<answer>A</answer>",
             "<think>The sign is red, the background is plain and nothing else is in view.</think>\n<answer>A</answer>",
             "<think>Hm, it could be blue.</think>\n<answer>B</answer>",
             "<think>" + "Looking at the colours one by one, " * 6 + "it is red.</think>\n<answer>A</answer>"]


def tiny_samples(root: Path) -> list[dict]:
    """Catalog-like rows, each with its own small image stored under `root`."""
    rows = []
    for i, response in enumerate(RESPONSES):
        rel = f"images/s{i}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        if not (root / rel).exists():  # (torchrun ranks re-read what the test process wrote)
            Image.new("RGB", (120 + 28 * i, 100), (200, 40 * i, 40)).save(root / rel)
        rows.append({"id": f"s{i}", "question": "<image>\nWhat colour is the sign?\nA. red\nB. blue",
                     "response": response, "image_paths": [rel], "has_image": True})
    return rows


def tiny_setup(root: Path):
    """(model folder, processor, examples) for the 4 samples on the tiny model."""
    from thyme_core.base.home import DataHome
    from thyme_core.model import ensure_tiny_model, load_processor

    folder = ensure_tiny_model(DataHome(root).ensure())
    processor = load_processor(folder, max_pixels=16 * 28 * 28)
    examples, drops = build_examples(tiny_samples(root), root, processor,
                                     ExampleOptions(max_length=4096, max_pixels=16 * 28 * 28))
    assert not drops and len({e.n_label_tokens for e in examples}) == len(examples)
    return folder, processor, examples


def load_tiny(folder):
    from thyme_core.model import load_model

    torch.manual_seed(0)
    return load_model(folder, dtype=torch.float32).train()


def big_batch_reference(folder, processor, examples) -> tuple[float, dict[str, torch.Tensor]]:
    """Mean NLL over all label tokens of the 4 examples as one batch, and its gradient (plain torch)."""
    from thyme_core.sft.collate import collate

    model = load_tiny(folder)
    batch = collate(examples, processor, processor.image_token_id, processor.tokenizer.pad_token_id)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def deepspeed_step(folder, processor, examples, world: int, rank: int, micro: int, run_dir: Path):
    """One SFT step (sft.loop.train_step) on a ZeRO-2 engine with SGD lr 1: (metrics, minus the weight change)."""
    import deepspeed

    from thyme_core.sft import loop
    from thyme_core.sft.config import SftConfig

    cfg = SftConfig(global_batch=len(examples), micro_batch=micro, nproc=world, max_grad_norm=0.0,
                    freeze_vision=False, gradient_checkpointing=False, loss_chunk=7)
    model = load_tiny(folder)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ds = loop.fill_deepspeed_config(cfg.deepspeed_path(), cfg.global_batch, micro, cfg.accumulation, 0.0, False)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                                           config=ds)
    plan = BatchPlan([list(range(len(examples)))], ["image"], 0)
    ctx = loop.Context(cfg, run_dir, examples, plan, processor, rank, world, torch.device("cpu"))
    metrics = loop.train_step(engine, ctx, 0)
    after = dict(engine.module.named_parameters())
    return metrics, {n: before[n] - after[n].detach() for n in before}


def assert_same_update(metrics, applied, loss, grads):
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert set(grads) <= set(applied)
    for name, g in grads.items():
        torch.testing.assert_close(applied[name], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_rank_deepspeed(monkeypatch):
    """A one-rank gloo process group as torchrun would set it up, destroyed afterwards."""
    import deepspeed
    import torch.distributed as dist

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                       "DS_ACCELERATOR": "cpu"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", os.environ.get(
        "TORCH_EXTENSIONS_DIR", str(Path(__file__).resolve().parents[2] / ".cache" / "torch_extensions")))
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    yield
    dist.destroy_process_group()


def test_two_micro_batches_on_one_rank_give_the_big_batch_update(tmp_path, one_rank_deepspeed):
    folder, processor, examples = tiny_setup(tmp_path)
    loss, grads = big_batch_reference(folder, processor, examples)
    metrics, applied = deepspeed_step(folder, processor, examples, world=1, rank=0, micro=2, run_dir=tmp_path)
    assert metrics["label_tokens"] == sum(e.n_label_tokens for e in examples)
    assert_same_update(metrics, applied, loss, grads)
