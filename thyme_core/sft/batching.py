"""Batch plans: which examples go into which optimizer step, decided before training starts.

A plan is a list of global batches (example indices), a pure function of (lengths, kinds, batch size, seed,
epochs). Being decided up front makes resume exact: a restarted run rebuilds the same plan and skips the
steps its checkpoint already took. Within a global batch, examples are sorted by length and dealt out as
micro-batches of neighbours, so padding stays small; batches are cut from length-sorted groups of
`group_batches` batches of a shuffled pool (the "length-grouped" sampler of HF/torchtune), then shuffled.

Stage 2 (annealing) keeps image and text-only samples apart: every global batch, and so every micro-batch
on every rank, is drawn from one pool. `image_ratio` sets the share of image steps while both pools last
(default: proportional to their sizes). An incomplete last batch of a pool is left out and counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    steps: list[list[int]]  # global batches of example indices
    kinds: list[str]  # "image", "text" or "mixed" per step
    left_out: int  # examples in incomplete tail batches, per epoch summed

    def __len__(self) -> int:
        return len(self.steps)


def plan_batches(lengths: list[int], has_image: list[bool], global_batch: int, *, seed: int, epochs: int,
                 separate_kinds: bool, image_ratio: float | None = None, group_batches: int = 8) -> BatchPlan:
    steps, kinds, left_out = [], [], 0
    for epoch in range(epochs):
        rng = random.Random(f"{seed}:{epoch}")
        if separate_kinds:
            pools = {k: [i for i, img in enumerate(has_image) if img == (k == "image")] for k in ("image", "text")}
        else:
            pools = {"mixed": list(range(len(lengths)))}
        batches = {}
        for kind, pool in pools.items():
            batches[kind], tail = _length_grouped(pool, lengths, global_batch, group_batches, rng)
            left_out += tail
        for kind, batch in _interleave(batches, image_ratio, rng):
            steps.append(batch)
            kinds.append(kind)
    return BatchPlan(steps, kinds, left_out)


def _length_grouped(pool: list[int], lengths: list[int], size: int, group: int, rng: random.Random):
    pool = list(pool)
    rng.shuffle(pool)
    usable = len(pool) - len(pool) % size
    batches = []
    for g in range(0, usable, size * group):
        chunk = sorted(pool[g: min(g + size * group, usable)], key=lambda i: (-lengths[i], i))
        batches += [chunk[b: b + size] for b in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches, len(pool) - usable


def _interleave(batches: dict[str, list[list[int]]], image_ratio: float | None, rng: random.Random):
    """(kind, batch) in order: one pool, or image/text steps drawn with probability image_ratio."""
    if set(batches) == {"mixed"}:
        return [("mixed", b) for b in batches["mixed"]]
    image, text = list(batches["image"]), list(batches["text"])
    total = len(image) + len(text)
    ratio = image_ratio if image_ratio is not None else (len(image) / total if total else 0.0)
    out = []
    while image and text:
        out.append(("image", image.pop(0)) if rng.random() < ratio else ("text", text.pop(0)))
    out += [("image", b) for b in image] + [("text", b) for b in text]
    return out


def micro_batches(step: list[int], lengths: list[int], world: int, rank: int, micro: int) -> list[list[int]]:
    """This rank's micro-batches of one global batch: neighbours by length, micro-batch j to rank j % world."""
    ordered = sorted(step, key=lambda i: (-lengths[i], i))
    chunks = [ordered[j: j + micro] for j in range(0, len(ordered), micro)]
    return chunks[rank::world]


def padding_ratio(batch_lengths: list[list[int]]) -> float:
    """Share of padded positions when each batch is padded to its longest sequence."""
    total = sum(max(b) * len(b) for b in batch_lengths if b)
    real = sum(sum(b) for b in batch_lengths)
    return 0.0 if total == 0 else 1.0 - real / total
