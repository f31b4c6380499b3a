"""Generate a synthetic Thyme split: sample i is a pure function of (split, i, seed, size).

Because each sample seeds its own Generator, samples can be made by a process pool in any order and the
output is identical for any number of workers. Records come back in index order, in bounded batches so
memory stays flat however many samples are asked for.

Workers come from a forkserver, not a plain fork: a process that has already run cv2 holds its thread
pool, and a forked child that calls cv2 again can hang forever on that pool's locks. As with spawn, a
plain script that uses a pool needs the `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Iterator

from thyme_core.synth.compute_samples import image_computation, text_computation
from thyme_core.synth.execute import Runner
from thyme_core.synth.samples import Sample, kind_of, new_context, sample_rng, single_round, two_round
from thyme_core.synth.zoom import zoom_sample

TEXT_ONLY_SHARE = 0.6  # of computation samples; the rest compute from an image
_BATCH = 64
_SERIAL_BELOW = 24  # smaller jobs are not worth a pool's start-up


def generate_sample(split: str, index: int, seed: int = 0, width: int = 1000, height: int = 800) -> Sample:
    """Sample `index` of `split`: a scene (unless text-only), its question, executed code and response."""
    kind = kind_of(split)
    if kind == "zoom":
        return zoom_sample(index, seed)  # its own fixed picture size (zoom.SIZE)
    rng = sample_rng(split, index, seed)
    with tempfile.TemporaryDirectory(prefix="thyme-synth-") as tmp:
        if kind == "computation" and rng.random() < TEXT_ONLY_SHARE:
            return text_computation(rng, Runner(tmp, None))
        ctx = new_context(rng, width, height, tmp)
        if kind == "single_round":
            return single_round(ctx)
        if kind == "two_round":
            return two_round(ctx)
        return image_computation(ctx)


def _record(index: int, split: str, seed: int, width: int, height: int) -> dict:
    return generate_sample(split, index, seed, width, height).record()


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one sample per process already uses the cores


def generate_records(split: str, n: int, seed: int = 0, width: int = 1000, height: int = 800,
                     workers: int | None = None) -> Iterator[dict]:
    """HF rows (image as base64 strings, question, response) for samples 0..n-1, in order."""
    kind_of(split)  # fail fast on an unknown split, before any process starts
    make = partial(_record, split=split, seed=seed, width=width, height=height)
    workers = workers or os.cpu_count() or 1
    if workers == 1 or n < _SERIAL_BELOW:
        yield from map(make, range(n))
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # workers start with the heavy imports already done
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        for start in range(0, n, _BATCH):
            yield from pool.map(make, range(start, min(n, start + _BATCH)), chunksize=4)
