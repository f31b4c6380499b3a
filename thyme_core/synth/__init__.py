"""Synthetic Thyme SFT data: real pictures, Thyme-style responses whose code really ran, HF layout files.

It feeds the demo, the tests and the benchmarks with data shaped like the released Thyme splits:
- scene.py: noisy gradient scenes with small signs, a rotated label, a faint label and a price list;
- codegen.py: crop / zoom / rotate / enhance / threshold code in PIL, cv2 and numpy styles;
- execute.py: runs that code in-process (trusted: we wrote it) so processed images are its true outputs;
- samples.py, compute_samples.py, compute.py, text.py: the sample families and their wording;
- generate.py: sample i of a split is a pure function of (split, i, seed, size); a process pool for speed;
- writer.py: Parquet (zstd, row groups) or JSONL with columns image (list of base64), question, response;
- bad.py: corrupt or unusual payloads and records, each with the reason code the pipeline should record;
- zoom.py: the zoom task (a small coloured square in a large picture) in SFT, RL and benchmark form, which
  bench/learn_cpu.py trains on;
- rl.py, benchmark.py: RL records derived from SFT records; the demo benchmark.
"""

from __future__ import annotations

from pathlib import Path

from thyme_core.synth.generate import generate_records, generate_sample
from thyme_core.synth.samples import KINDS, SPLIT_KINDS, Sample, kind_of
from thyme_core.synth.writer import DEFAULT_ROW_GROUP_SIZE, FORMATS, SCHEMA, write_rows

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE", "FORMATS", "KINDS", "SCHEMA", "SPLIT_KINDS", "Sample",
    "generate_records", "generate_sample", "kind_of", "write_dataset",
]


def write_dataset(path: Path, split: str, n: int, *, seed: int = 0, width: int = 1000, height: int = 800,
                  fmt: str = "parquet", row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
                  workers: int | None = None) -> int:
    """Generate n samples of `split` and write them to `path` atomically. Returns the row count."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    rows = generate_records(split, n, seed, width, height, workers)
    return write_rows(Path(path), rows, fmt, row_group_size)
