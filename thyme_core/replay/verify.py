"""Replay verification: does each prepared sample's code reproduce what its response recorded?

Every code block of a sample runs, in order, in one sandbox session per sample (a live interpreter, so later
blocks see earlier variables and files), against the sample's stored original image. What it produces is
compared with the sandbox_output the response shows after that block:
- an image: the processed image the sample stores for that output, by size and pixel similarity
  (1 - mean absolute difference / 255 over RGB; `match` at or above `min_similarity`);
- text: the printed text, whitespace-normalised, numbers compared with a relative tolerance.

The code run is the model's original text (response_orig): output paths under /mnt/data/temp_processed_images
keep their meaning inside the session, and every literal that preparation mapped to the input image is bound
to the real input through `image_path` (the sandbox rebinds that name itself). One record per block lands in
`shards/replay/<key>/replays.parquet`, keyed like the prepare shard it replays plus the replay settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from thyme_core import catalog
from thyme_core.base import versioning
from thyme_core.base.fsio import atomic_dir
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import ReplayRecord, ReplayRun, to_table
from thyme_core.thyme_format import code_blocks, sandbox_outputs

TABLE = "replay"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class ReplayConfig:
    min_similarity: float = field(default=0.98, metadata={"help": "pixel similarity counted as a match"})
    rel_tol: float = field(default=1e-6, metadata={"help": "relative tolerance for printed numbers"})
    timeout_s: float = field(default=20.0, metadata={"help": "wall-clock limit per code block"})
    isolation: str = field(default="bwrap", metadata={"help": "sandbox isolation: bwrap, or none (trusted data only)"})

    def fingerprint(self) -> str:
        text = f"{self.min_similarity}:{self.rel_tol}:{self.timeout_s}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def code_version() -> str:
    """The code that decides a replay's outcome: this module's import closure (the sandbox included)."""
    return versioning.code_version(__name__)


def replay_key(prepare_shard: str, config: ReplayConfig) -> str:
    """The prepare shard's key already covers the input's hash, the prepare config and its code version."""
    text = f"{prepare_shard}:{config.fingerprint()}:{code_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ReplayShardResult:
    folder: Path
    reused: bool  # an earlier run had already replayed this shard with the same settings and code
    blocks: int
    matched: int
    run: ReplayRun | None = None  # how this run replayed it (None when reused)


def replay_shard(prepare_dir: Path, home: DataHome, config: ReplayConfig, pool=None,
                 concurrency: int = 2) -> ReplayShardResult:
    """Replay every sample of one prepared shard and publish its records (or reuse the published ones)."""
    final = home.shards_dir / TABLE / replay_key(prepare_dir.name, config)
    if (final / "replays.parquet").exists():
        return _result(final, reused=True)
    if pool is None:
        from thyme_core.sandbox import Limits, shared_pool

        pool = shared_pool(config.isolation, Limits(timeout_s=config.timeout_s, cpu_s=max(1, int(config.timeout_s))))
    samples = [r for name in ("image_samples", "text_samples")
               for r in pq.read_table(prepare_dir / f"{name}.parquet").to_pylist()]
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, concurrency)) as ex:
        per_sample = list(ex.map(lambda s: replay_sample(s, home, pool, config), samples))
    records = [r for rs in per_sample for r in rs]
    run = ReplayRun(final.name, prepare_dir.name, len(samples), len(records),
                    round(time.perf_counter() - started, 3), max(1, concurrency), socket.gethostname())
    with atomic_dir(final, home.tmp_dir) as stage:
        pq.write_table(to_table(ReplayRecord, records), stage / "replays.parquet", compression="zstd")
        # beside the content, never in a version (manifest.version_paths leaves *.run.parquet out)
        pq.write_table(to_table(ReplayRun, [run]), stage / "replays.run.parquet", compression="zstd")
    catalog.publish(home)
    return dataclasses.replace(_result(final, reused=False), run=run)


def _result(folder: Path, reused: bool) -> ReplayShardResult:
    status = pq.read_table(folder / "replays.parquet", columns=["status"]).column("status").to_pylist()
    return ReplayShardResult(folder, reused, len(status), status.count("match"))


def replay_sample(sample: dict, home: DataHome, pool, config: ReplayConfig) -> list[ReplayRecord]:
    response = sample["response_orig"]
    blocks, outputs = code_blocks(response), sandbox_outputs(response)
    images = [home.absolute(p) for p in sample["image_paths"]]
    to_input = _input_literals(sample["path_map"])
    session = f"replay-{sample['id']}"
    records, next_image = [], 1
    try:
        for i, block in enumerate(blocks):
            until = blocks[i + 1].span[0] if i + 1 < len(blocks) else len(response)
            shown = next((o for o in outputs if block.span[1] <= o.span[0] < until), None)
            expected_image = None
            if shown is not None and shown.shows_image:
                expected_image = images[next_image] if next_image < len(images) else None
                next_image += 1
            code = _bind_input(block.code, to_input.get(block.index, ()))
            result = pool.run(code, images[:1], session)
            status, similarity, reason, detail = _compare(result, shown, expected_image, pool, session, config)
            records.append(ReplayRecord(sample["id"], sample["split"], block.index, status, similarity, reason,
                                        detail))
    finally:
        pool.close_session(session)
    return records


def _input_literals(path_map: str) -> dict[int, tuple[str, ...]]:
    """Per code block, the literal paths preparation mapped to the input image (other than image_path = ...)."""
    out: dict[int, set[str]] = {}
    for m in json.loads(path_map or "[]"):
        if m["where"] == "code" and m["image_index"] == 0 and m.get("rewritten", True):
            out.setdefault(m["block"], set()).add(m["original"])
    return {k: tuple(sorted(v, key=len, reverse=True)) for k, v in out.items()}


def _bind_input(code: str, literals: tuple[str, ...]) -> str:
    for lit in literals:
        for q in ('"', "'"):
            code = code.replace(f"image_path = {q}{lit}{q}", "image_path = image_path")
            code = code.replace(f"{q}{lit}{q}", "image_path")
    return code


def _compare(result, shown, expected_image, pool, session, config) -> tuple[str, float | None, str, str]:
    """(status, similarity, reason, detail): status is match / mismatch / failed."""
    if result.status != "ok":
        return "failed", None, str(result.status), (result.error or result.stderr)[-300:]
    if shown is None:
        return "match", None, "", "no recorded output to compare"
    if expected_image is not None:
        produced = _produced_image(result, pool, session)
        if produced is None:
            return "mismatch", None, "no_image", f"expected an image, got {result.stdout.strip()[:120]!r}"
        return _compare_images(produced, expected_image, config)
    if not shown.shows_image and result.images and not result.stdout.strip():
        return "mismatch", None, "image_instead_of_text", "recorded text, code saved an image"
    return _compare_text(result.stdout, shown.body, config)


def _produced_image(result, pool, session) -> bytes | None:
    """The bytes of the image the code printed last (the sandbox read them once), else of the last saved."""
    for line in reversed(result.stdout.strip().splitlines()):
        image = result.printed_image(line)
        if image is not None:
            return image.data
    return result.images[-1].data if result.images else None


def _compare_images(produced: bytes, expected: Path, config: ReplayConfig) -> tuple[str, float | None, str, str]:
    try:
        with Image.open(io.BytesIO(produced)) as a:
            a.load()
    except Exception as exc:  # a broken image that got past the sandbox's header checks
        return "mismatch", None, "no_image", f"produced image unreadable ({type(exc).__name__})"
    with a, Image.open(expected) as b:
        if a.size != b.size:
            return "mismatch", 0.0, "size_differs", f"produced {a.size[0]}x{a.size[1]}, recorded {b.size[0]}x{b.size[1]}"
        x = np.asarray(a.convert("RGB"), dtype=np.int16)
        y = np.asarray(b.convert("RGB"), dtype=np.int16)
    similarity = round(1.0 - float(np.abs(x - y).mean()) / 255.0, 6)
    if similarity >= config.min_similarity:
        return "match", similarity, "", ""
    return "mismatch", similarity, "pixels_differ", f"similarity {similarity:.4f} < {config.min_similarity}"


def _compare_text(printed: str, recorded: str, config: ReplayConfig) -> tuple[str, float | None, str, str]:
    a, b = " ".join(printed.split()), " ".join(recorded.split())
    if a == b:
        return "match", None, "", ""
    na, nb = _NUMBER.findall(a), _NUMBER.findall(b)
    if na and len(na) == len(nb) and _NUMBER.sub("#", a) == _NUMBER.sub("#", b) and all(
        math.isclose(float(x), float(y), rel_tol=config.rel_tol, abs_tol=1e-12) for x, y in zip(na, nb)
    ):
        return "match", None, "", "numbers equal within tolerance"
    return "mismatch", None, "text_differs", f"printed {a[:100]!r}, recorded {b[:100]!r}"


def prepared_shards(home: DataHome, split: str) -> list[str]:
    """Folders of the finished prepare shards of a split, in source order; ThymeError when there are none."""
    _, rows = catalog.query(
        home, "SELECT shard FROM prepare_shards WHERE split = ? ORDER BY source_file, row_start", [split]
    )
    if not rows:
        _, splits = catalog.query(home, "SELECT DISTINCT split FROM prepare_shards ORDER BY 1")
        raise ThymeError(f"no prepared samples of split {split!r} in {home.root} (prepared splits: "
                         f"{', '.join(s for (s,) in splits) or 'none'}; run `thyme prepare` first)")
    return [str(home.shards_dir / "prepare" / r[0]) for r in rows]


def summary_markdown(where: "DataHome | catalog.Query", split: str, results: list[ReplayShardResult] = ()) -> str:
    """This run's shards (replayed and reused), then the split's reproduction figures and failures (from
    `where`: a home, or a published version queried in place)."""
    query = catalog.querier(where)
    reused = [r for r in results if r.reused]
    lines = [f"## replay_sft_data: split `{split}`", "", "### This run", "",
             f"- shards: {len(results) - len(reused)} replayed, {len(reused)} already done with the same settings "
             f"and code (reused, {sum(r.blocks for r in reused)} code blocks)",
             f"- code blocks: {sum(r.blocks for r in results)}, {sum(r.matched for r in results)} reproduced", ""]
    for title, name in (("Samples whose code reproduces", "replay_summary"), ("Not reproduced", "replay_failures")):
        columns, rows = query(catalog.sql_text(f"queries/{name}"))
        rows = [row[1:] for row in rows if row[0] == split]
        lines += [f"### {title}", ""]
        if not rows:
            lines += ["none", ""]
            continue
        lines += ["| " + " | ".join(columns[1:]) + " |", "|" + "---|" * (len(columns) - 1)]
        lines += ["| " + " | ".join(str(v).replace("|", "/")[:120] for v in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def describe_shard(result: ReplayShardResult) -> str:
    """One log line per shard."""
    what = "already done (reused)" if result.reused else "replayed"
    line = f"{result.folder.name}: {what}, {result.blocks} code blocks, {result.matched} reproduced"
    if result.run is not None and result.run.seconds > 0:
        line += f" in {result.run.seconds:.1f} s ({result.blocks / result.run.seconds:.1f} blocks/s)"
    return line
