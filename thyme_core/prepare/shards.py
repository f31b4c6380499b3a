"""Prepare Thyme SFT and RL data: one shard of source rows in, one published shard folder out.

For every record: check the fields, decode and check each image (images.py), map every path the text
mentions to the stored image it means (paths.py), and either accept the sample or reject it with a reason
code. Images of accepted samples go to the content-addressed store; the shard's rows are written as zstd
Parquet into a staging folder that is renamed into place in one step:

    shards/prepare/<shard key>/{image_samples, text_samples, rl_samples, images, rejects, summary}.parquet

A shard holds rows of one file, so of one schema (source.detect_schema): an SFT shard's rl_samples part and
an RL shard's image_samples / text_samples parts are empty. Every shard writes every part, so each shard
folder has the same shape whatever it holds. RL records are built by prepare_rl.py.

A finished shard is never redone (its key covers the input's content hash, the split, the row range, the
config and the code version), a crashed one left only staging debris in tmp/, so reruns converge to
exactly the catalog of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from thyme_core.images import store as img
from thyme_core.images.values import as_list, prepare_values
from thyme_core import catalog
from thyme_core.base import versioning
from thyme_core.base.errors import BadParameter
from thyme_core.base.fsio import atomic_dir, clean_stale_staging
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.prepare import hub
from thyme_core.prepare.paths import rewrite_paths
from thyme_core.prepare.rl import build_rl_sample
from thyme_core.base.reasons import Reject, Rejected, require_strings
from thyme_core.catalog.schema import ImageRecord, RejectRecord, RlSample, SftSample, ShardRun, ShardSummary, to_table
from thyme_core.prepare.source import ShardSpec, image_fetcher, plan_shards, read_shard
from thyme_core.thyme_format import code_blocks

TABLE = "prepare"
# Modules whose code shapes prepared output: their source is the code version in every shard key.
@dataclass(frozen=True)
class PrepareConfig:
    shard_rows: int = field(default=1000, metadata={"help": "source rows per shard (one Prefect task each)"})
    max_pixels: int = field(default=100_000_000, metadata={"help": "reject images with more pixels (bombs)"})
    verify: str = field(default="structure", metadata={"help": "'structure' or 'decode': how hard to check JPEGs"})

    def __post_init__(self):
        if self.shard_rows < 1:
            raise BadParameter(f"shard_rows must be >= 1, not {self.shard_rows}")
        self.image_config()  # validates max_pixels and verify

    def image_config(self) -> img.ImageConfig:
        return img.ImageConfig(max_pixels=self.max_pixels, verify=self.verify)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """The code a shard's content depends on: this module's import closure."""
    return versioning.code_version(__name__)


def plan(source: str | Path, split: str, config: PrepareConfig, home: DataHome | None = None) -> list[ShardSpec]:
    """The shards of a run. With a home, also clear staging debris a crashed earlier run left in its tmp/.
    An hf:// source is resolved to one commit and every file fetched here (the flow streams them instead:
    resolve once, then plan_hub_file per file while earlier files' shards run)."""
    if home is not None:
        home.ensure()
        clean_stale_staging(home.tmp_dir)
    if hub.is_hub(source):
        snapshot = hub.resolve(str(source))
        return [spec for name in snapshot.files for spec in plan_hub_file(snapshot, name, split, config)]
    return plan_shards(source, split, config.shard_rows, _salt(config), home)


def resolve_hub(uri: str, home: DataHome | None = None) -> hub.HubSnapshot:
    """The commit and data files of an hf:// source (the flow's first step); with a home, staging debris is
    cleared as by `plan`."""
    if home is not None:
        home.ensure()
        clean_stale_staging(home.tmp_dir)
    return hub.resolve(uri)


def plan_hub_file(snapshot: hub.HubSnapshot, filename: str, split: str, config: PrepareConfig) -> list[ShardSpec]:
    """Fetch one data file of a hub snapshot and plan its shards; their keys hold the commit sha."""
    try:
        local = hub.fetch(snapshot.repo_id, snapshot.sha, filename)
    except FileNotFoundError as exc:
        raise ThymeError(str(exc)) from None
    salt = f"{_salt(config)}:hf:{snapshot.repo_id}@{snapshot.sha}:{filename}"
    return [dataclasses.replace(s, display_name=filename, hub_base=snapshot.base(filename))
            for s in plan_shards(local, split, config.shard_rows, salt)]


def plan_hub_ranges(snapshot: hub.HubSnapshot, split: str, config: PrepareConfig) -> list[ShardSpec]:
    """The shards of a hub snapshot planned by range, for workers that read them by range (a cluster):
    nothing is downloaded whole, and the keys are those plan_hub_file gives (hub_range.py)."""
    from thyme_core.prepare import hub_range, source

    return [spec for f in hub_range.describe(snapshot) for spec in source.plan_hub_file(
        f, split, config.shard_rows, f"{_salt(config)}:hf:{snapshot.repo_id}@{snapshot.sha}:{f.name}")]


def _salt(config: PrepareConfig) -> str:
    return f"{config.fingerprint()}:{code_version()}"


def shard_dir(home: DataHome, key: str) -> Path:
    return home.shards_dir / TABLE / key


@dataclass(frozen=True)
class ShardResult:
    summary: ShardSummary
    reused: bool  # True when an earlier run had already finished this shard
    run: ShardRun | None = None  # how this run made it (None when reused)


def finished(spec: ShardSpec, home: DataHome) -> ShardResult | None:
    """The result of an earlier run's finished shard, else None: cheap (one small file), so callers decide
    "already done" before handing any work to a process pool."""
    final = shard_dir(home, spec.key)
    if (final / "summary.parquet").exists():
        return ShardResult(read_summary(final), reused=True)
    return None


def prepare_shard(spec: ShardSpec, home: DataHome, config: PrepareConfig) -> ShardResult:
    """Process one shard, or return the summary of the finished one already there."""
    done = finished(spec, home)
    if done is not None:
        return done
    final = shard_dir(home, spec.key)
    home.ensure()
    started = time.perf_counter()
    out = _ShardOutput(spec, home, config.image_config())
    for row, record in read_shard(spec):
        out.add(row, record)
    summary = out.summary()
    run = ShardRun(spec.key, out.images_written, round(time.perf_counter() - started, 3), socket.gethostname())
    with atomic_dir(final, home.tmp_dir) as stage:
        out.write(stage, summary, run)
    catalog.publish(home)
    return ShardResult(summary, reused=False, run=run)


def read_summary(folder: Path) -> ShardSummary:
    row = pq.read_table(folder / "summary.parquet").to_pylist()[0]
    return ShardSummary(**row)


class _ShardOutput:
    """Accumulates one shard's accepted samples, images and rejects."""

    def __init__(self, spec: ShardSpec, home: DataHome, image_config: img.ImageConfig):
        self.spec = spec
        self.store = img.ImageStore(home.root, home.tmp_dir)
        self.image_config = image_config
        self.source_file = spec.display_name or Path(spec.path).name
        # Relative image paths are taken from the data file's folder (an S3 object's: by its fetcher).
        self.base = Path(spec.path).parent
        self.fetch = image_fetcher(spec)
        self.samples: list[SftSample] = []
        self.rl_samples: list[RlSample] = []
        self.rejects: list[RejectRecord] = []
        self.images: dict[str, ImageRecord] = {}
        self.images_seen = self.images_written = 0

    def add(self, row: int, record: dict | str) -> None:
        build, into = (build_rl_sample, self.rl_samples) if self.spec.schema == "rl" else (build_sample, self.samples)
        try:
            sample, prepared = build(record, self.spec.split, self.image_config, self.base, self.fetch)
        except Rejected as exc:
            self.rejects.append(RejectRecord(self.spec.split, self.source_file, row, exc.reason, exc.detail, self.spec.key))
            return
        into.append(dataclasses.replace(sample, source_file=self.source_file, source_row=row, shard=self.spec.key))
        for p in prepared:
            self.images_seen += 1
            self.images_written += self.store.put(p)
            self.images.setdefault(p.sha256, _image_record(p))

    def summary(self) -> ShardSummary:
        n_image = sum(s.has_image for s in self.samples)
        return ShardSummary(
            shard=self.spec.key, split=self.spec.split, source_file=self.source_file,
            row_start=self.spec.row_start, row_stop=self.spec.row_stop,
            samples_image=n_image, samples_text=len(self.samples) - n_image, samples_rl=len(self.rl_samples),
            rejects=len(self.rejects),
            images_seen=self.images_seen,
            images_repaired=sum(1 for r in self.images.values() if r.repair),
            code_version=code_version(),
        )

    def write(self, folder: Path, summary: ShardSummary, run: ShardRun) -> None:
        with_image = [s for s in self.samples if s.has_image]
        text_only = [s for s in self.samples if not s.has_image]
        for name, cls, rows in (
            ("image_samples", SftSample, with_image),
            ("text_samples", SftSample, text_only),
            ("rl_samples", RlSample, self.rl_samples),
            ("images", ImageRecord, sorted(self.images.values(), key=lambda r: r.sha256)),
            ("rejects", RejectRecord, self.rejects),
            ("summary", ShardSummary, [summary]),
            ("summary.run", ShardRun, [run]),  # beside the content, never in a version (manifest.version_paths)
        ):
            pq.write_table(to_table(cls, rows), folder / f"{name}.parquet", compression="zstd")


def _image_record(p: img.PreparedImage) -> ImageRecord:
    return ImageRecord(p.sha256, p.relpath, p.format, p.width, p.height, len(p.data), str(p.repair), p.source_format)


def build_sample(record: dict | str, split: str, image_config: img.ImageConfig, base: Path | None = None,
                 fetch=None) -> tuple[SftSample, list[img.PreparedImage]]:
    """One source record -> (sample, images to store), or Rejected with the reason. Image values may be
    base64, data URIs, paths (relative to `base`), file:// URIs or HF Image structs (images/values.py).

    Nothing is written here: a sample rejected for its third image leaves no orphan in the store.
    """
    question, response, raw_images = _fields(record)
    prepared = prepare_values(raw_images, image_config, base, fetch)
    stored = [p.relpath for p in prepared]
    rewrite = rewrite_paths(question, response, stored)
    if rewrite.problem is not None:
        raise Rejected(rewrite.problem.reason, rewrite.problem.detail)
    shas = [p.sha256 for p in prepared]
    ident = hashlib.sha256("\0".join([split, question, response, *shas]).encode()).hexdigest()[:32]
    sample = SftSample(
        id=ident, split=split, source_file="", source_row=-1,
        question=rewrite.question, response=rewrite.response, question_orig=question, response_orig=response,
        image_sha256=shas, image_paths=stored, has_image=bool(shas), n_images=len(shas),
        n_code_blocks=len(code_blocks(response)),
        path_map=json.dumps([dataclasses.asdict(m) for m in rewrite.mappings]), shard="",
    )
    return sample, prepared


def _fields(record: dict | str) -> tuple[str, str, list]:
    record = require_strings(record, ("question", "response"))
    images = as_list(record.get("image"))
    if images is None:
        images = []  # text-only samples may carry a null image list
    if not isinstance(images, list):
        raise Rejected(Reject.BAD_FIELD, f"image is {type(images).__name__}, expected a list")
    return record["question"], record["response"], images

