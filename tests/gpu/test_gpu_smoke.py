"""GPU tier (opt-in: `make test-gpu` on a CUDA machine): the tiny offline Qwen2.5-VL on the GPU in bf16, with
an image, through a forward+backward and a short generate. Skipped, with the reason, where no CUDA device is."""

import numpy as np
import pytest
import torch
from PIL import Image

from thyme_core.base.home import DataHome
from thyme_core.model import load_model_and_processor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_tiny_model_trains_and_generates_on_gpu_in_bf16(tmp_path):
    model, processor = load_model_and_processor(None, DataHome(tmp_path / "home").ensure(), dtype=torch.bfloat16,
                                                device="cuda")
    image = Image.fromarray((np.random.default_rng(0).random((112, 140, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    batch = processor(text=[text], images=[image], return_tensors="pt").to("cuda")
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > batch["input_ids"].shape[1]
