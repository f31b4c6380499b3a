"""metrics.jsonl of a run: one JSON record per line, written by rank 0; the launcher also streams them.

A resumed run redoes the steps after its checkpoint and writes their records again: readers keep the last
record of each step. Records without the `keep` field (events such as "plan" or "resumed") are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

PREFIX = "METRICS "


def read_metrics(run_dir: Path, keep: str | None = None) -> list[dict]:
    """The step records of metrics.jsonl in step order, the last record of each step."""
    path = Path(run_dir) / "metrics.jsonl"
    by_step = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        if "step" in rec and (keep is None or keep in rec):
            by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


def append(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def say(record: dict) -> None:
    """Print a record for the launcher (launch.run_torchrun parses these lines)."""
    print(PREFIX + json.dumps(record), flush=True)


def parse(line: str) -> dict | None:
    at = line.find(PREFIX + "{")
    return json.loads(line[at + len(PREFIX):]) if at >= 0 else None
