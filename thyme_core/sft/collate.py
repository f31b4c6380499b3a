"""Examples -> the tensors Qwen2_5_VLForConditionalGeneration takes, padded on the right.

Pixels are decoded here, per micro-batch, with the processor's own image processor and pixel limits; the
grid it returns must equal the one examples.py counted tokens for (else the image tokens and the vision
features would not line up, which the model reports far less clearly). `mm_token_type_ids` marks image
tokens: transformers 5.x builds the 3-D M-RoPE positions only when it is given.
"""

from __future__ import annotations

import torch
from PIL import Image

from thyme_core.base.errors import ThymeError
from thyme_core.sft.examples import IGNORE, Example


def collate(examples: list[Example], processor, image_pad_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(e.n_tokens for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : e.n_tokens] = torch.tensor(e.input_ids)
        labels[row, : e.n_tokens] = torch.tensor(e.labels)
        mask[row, : e.n_tokens] = 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask,
             "mm_token_type_ids": (ids == image_pad_id).long()}
    paths = [p for e in examples for p in e.images]
    if paths:
        batch.update(_pixels(paths, [g for e in examples for g in e.grids], processor))
    return batch


def _pixels(paths, grids, processor) -> dict[str, torch.Tensor]:
    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    out = processor.image_processor(images=images, return_tensors="pt")
    got = [tuple(int(v) for v in row) for row in out["image_grid_thw"]]
    if got != [tuple(g) for g in grids]:
        raise ThymeError(f"image grids {got} differ from the counted {grids}: pixel limits changed mid-run?")
    return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}


def batch_stats(examples: list[Example]) -> dict[str, int]:
    width = max(e.n_tokens for e in examples)
    return {"tokens": sum(e.n_tokens for e in examples), "padded": width * len(examples),
            "label_tokens": sum(e.n_label_tokens for e in examples)}
