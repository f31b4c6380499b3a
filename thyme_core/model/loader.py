"""Load a Qwen2.5-VL model and its processor: a real checkpoint path, or the tiny offline model.

`load_model_and_processor(None, home)` builds (once) and loads the tiny model cached in the data home;
`load_model_and_processor("/models/Qwen2.5-VL-7B-Instruct", home)` loads a real one, and "tiny:NAME" a variant of
the tiny model (tiny.VARIANTS). Training, the agent
loop and RL all go through here, so the attention backend, dtype and image pixel limits are chosen in one
place: flash-attn 2 on CUDA when it is installed, PyTorch sdpa otherwise.

The processor is a Qwen2_5_VLProcessor without a video processor (the stock one requires torchvision for
videos, which CPU machines here cannot install) whose image processor is the PIL variant.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.model.tiny import MARKER, ensure_tiny_model

# transformers imports deepspeed when installed; without this it prints an accelerator warning on stdout.
os.environ.setdefault("DS_ACCELERATOR", "cpu" if not os.environ.get("CUDA_VISIBLE_DEVICES") else "cuda")


def _processor_class():
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        """Qwen2_5_VLProcessor for image (not video) input; needs no torchvision."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2_5_VLProcessor


def resolve_model_path(path: str | os.PathLike | None, home: DataHome) -> Path:
    """The folder to load: `path` itself, or a tiny model in `home` (built on first use): None, "" or "tiny"
    for the tiny one, "tiny:NAME" for a variant of tiny.VARIANTS (e.g. tiny:learn)."""
    if path is None or str(path) in ("", "tiny"):
        return ensure_tiny_model(home)
    if str(path).startswith("tiny:"):
        return ensure_tiny_model(home, name=str(path).split(":", 1)[1])
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ThymeError(f"{folder}: not a model folder (no config.json); pass a local Qwen2.5-VL checkpoint")
    return folder


def is_tiny(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).exists()


def load_processor(path: str | os.PathLike, min_pixels: int | None = None, max_pixels: int | None = None):
    """Tokenizer + PIL image processor (+ chat template) of the model at `path`, with optional pixel limits."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
    if min_pixels or max_pixels:
        current = image_processor.size
        image_processor.size = {"shortest_edge": int(min_pixels or current.shortest_edge),
                                "longest_edge": int(max_pixels or current.longest_edge)}
    return _processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=tokenizer.chat_template)


def pick_attention(device: str) -> str:
    """flash_attention_2 on CUDA when flash-attn is installed; sdpa everywhere else."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_model(path: str | os.PathLike, dtype=None, attn_implementation: str | None = None, device: str = "cpu"):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(
        path, dtype=dtype, attn_implementation=attn_implementation or pick_attention(device)
    )


def load_model_and_processor(path: str | os.PathLike | None, home: DataHome, *, dtype=None,
                             attn_implementation: str | None = None, device: str = "cpu",
                             min_pixels: int | None = None, max_pixels: int | None = None):
    """(model, processor) for `path`, or for the tiny offline model when `path` is None or "tiny"."""
    folder = resolve_model_path(path, home)
    model = load_model(folder, dtype=dtype, attn_implementation=attn_implementation, device=device)
    return model, load_processor(folder, min_pixels=min_pixels, max_pixels=max_pixels)


def weights_fingerprint(model, samples: int = 1024) -> str:
    """A short digest of a loaded model's weights: every tensor's name, shape, dtype and the raw bytes of up to
    `samples` evenly spaced elements. Exact (no float reductions, so the same on any device) and cheap at 7B
    (a few MB leave the GPU). Ranks compare it before training (base.ranks.agree): a node that loaded other
    weights under the same path would otherwise train silently, since a run's key names the model by path."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() > samples:
            flat = flat[torch.linspace(0, flat.numel() - 1, samples, device=flat.device).long()]
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
        digest.update(flat.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
