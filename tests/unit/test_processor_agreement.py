"""Rollout engines and the trainer resize images alike: for every backend constructor (vLLM through a
stand-in module), an image above the run's max_pixels is fitted by the backend's codec to the grid the
trainer's processor gives it, so the training forward of a fed-back image never meets `processor grids !=
ledger`. Before, the vLLM backend took the checkpoint's saved limits instead of the run's.
"""

from __future__ import annotations

import sys
import types

import pytest
from PIL import Image

from thyme_core.agent.backends import make_backend
from thyme_core.agent.backends.base import FedImage
from thyme_core.agent.backends.hf import model_inputs
from thyme_core.agent.ledger import fit_image
from thyme_core.model import ensure_tiny_model, load_processor

MIN_PIXELS, MAX_PIXELS = 3136, 12544  # the rl_tiny preset's; the image below is ten times larger
SIZE = (400, 300)


class StandInLLM:
    """vllm.LLM as far as the backend's constructor goes: it records its arguments."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        StandInLLM.made.append(kwargs)


@pytest.fixture
def vllm_stand_in(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=StandInLLM, SamplingParams=dict))
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    StandInLLM.made.clear()
    return StandInLLM.made


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from thyme_core.base.home import DataHome

    home = DataHome(tmp_path_factory.mktemp("agree")).ensure()
    path = home.root / "big.png"
    Image.new("RGB", SIZE, (30, 120, 200)).save(path)
    return home, path, load_processor(ensure_tiny_model(home), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def assert_trainer_grid(backend, trainer):
    home, path, processor = trainer
    codec = backend.codec
    fitted = FedImage(path, *fit_image(*SIZE, codec.min_pixels, codec.max_pixels))
    pad = processor.image_token_id
    got = model_inputs(processor, pad, [pad], [fitted])["image_grid_thw"].tolist()  # raises on a mismatch
    with Image.open(path) as im:
        want = processor.image_processor(images=[im.convert("RGB")], return_tensors="pt")["image_grid_thw"]
    assert got == want.tolist() and got[0][1] * got[0][2] * 196 <= MAX_PIXELS


@pytest.mark.parametrize("name, model", [("transformers", None), ("vllm", None), ("openai", "http://127.0.0.1:9/v1"),
                                         ("scripted", "tiny")])
def test_every_backend_fits_images_as_the_trainer(trainer, vllm_stand_in, name, model):
    home = trainer[0]
    backend = make_backend(name, model, home, responses="<answer>A</answer>", min_pixels=MIN_PIXELS,
                           max_pixels=MAX_PIXELS)
    assert_trainer_grid(backend, trainer)
    if name == "vllm":  # vLLM's own processor is given the same limits
        assert vllm_stand_in[0]["mm_processor_kwargs"] == {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_the_rl_ranks_rollout_engine_uses_the_trainers_processor(trainer, vllm_stand_in, engine):
    import torch

    from thyme_core.rl.config import RlConfig
    from thyme_core.rl.entry import _rollout_engine

    home, _, processor = trainer
    cfg = RlConfig(model=str(ensure_tiny_model(home)), nproc=1, prompts_per_step=1, rollout_engine=engine,
                   min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    backend, _, _ = _rollout_engine(cfg, home, torch.device("cpu"), processor, cuda=False)
    assert_trainer_grid(backend, trainer)
