"""What a cluster prepare of an hf:// source reads from the Hub: GETs and bytes to plan, and for one shard.

A Parquet file of --rows synthetic samples (640x480 JPEGs as base64) in row groups of 2 is served by the fake
Hub of the tests (tests/fakes.FakeHub, which answers Range requests as the Hub's storage does); the run is
planned by range (prepare.plan_hub_ranges: footers only) and one shard is read as a worker reads it
(source.read_shard over hub_range.RangeFile). Counts, not timings (a local fake says nothing about the Hub's
latency). Prints one JSON line last.

    .venv/bin/python bench/hub_range_bench.py --rows 32
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import FakeHub, serve_fake_hub  # noqa: E402
from thyme_core import prepare  # noqa: E402
from thyme_core.prepare import source  # noqa: E402
from thyme_core.synth import generate_records  # noqa: E402
from thyme_core.synth.writer import SCHEMA  # noqa: E402


def span(header: str) -> int:
    start, stop = header.removeprefix("bytes=").split("-")
    return int(stop) - int(start) + 1


def parquet_gets() -> list[str]:
    return [r for m, p, _, r in FakeHub.log if m == "GET" and p.endswith(".parquet")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32)
    args = ap.parse_args()
    rows = list(generate_records("2round", args.rows, 3, 640, 480, 1))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), buf, row_group_size=2)
    data = buf.getvalue()
    httpd, url = serve_fake_hub()
    os.environ.update(HF_ENDPOINT=url, HF_HUB_CACHE=tempfile.mkdtemp())
    sha = "4" * 40
    FakeHub.commits, FakeHub.refs = {sha: {"data/train.parquet": data}}, {"main": sha}
    try:
        specs = prepare.plan_hub_ranges(prepare.resolve_hub(f"hf://datasets/{FakeHub.repo}"), "s",
                                        prepare.PrepareConfig(shard_rows=2))
        plan = parquet_gets()
        FakeHub.log.clear()
        n = sum(1 for _ in source.read_shard(specs[len(specs) // 2]))
        shard = parquet_gets()
    finally:
        httpd.shutdown()
    print(json.dumps({"file_bytes": len(data), "shards": len(specs), "plan_gets": len(plan),
                      "plan_bytes": sum(map(span, plan)), "shard_rows": n, "shard_gets": len(shard),
                      "shard_bytes": sum(map(span, shard))}))


if __name__ == "__main__":
    main()
