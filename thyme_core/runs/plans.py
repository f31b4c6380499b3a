"""What a prepare, replay or evaluation run was and how far it got, recorded in the home (the viewer's runs page).

Those stages work in shards, and a finished shard folder (shards/<table>/<key>/) says that the shard finished,
not which run planned it, with what settings or from what inputs. So each run records, once it has planned its
shards, runs/<kind>/<key>/plan.json: the shard folders it planned, its config, its inputs (source files and
their sha256, dataset or model versions, the benchmark file's sha256), when and on which host it started; and
at its end DONE (with the versions it published) or FAILED (with the error). A rerun of the same plan writes
plan.json again and clears the end marker. Status is read from these files and the shard folders only:
- `done`: DONE is there;
- `failed`: FAILED is there (its error kept);
- `partial`: neither, with k of n planned shards published (a run still going looks the same: nothing in the
  home says whether its process is alive).
The key: an evaluation's run id; a prepare or replay run's is a hash of the shard keys it planned, so the same
plan is the same run. Runs made before these records existed, or on a cluster (their shards land in the store),
have none: the runs page still shows their shards by split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from thyme_core.base.fsio import atomic_write_bytes
from thyme_core.base.home import DataHome

# kind -> (shard table, the part whose presence says a shard of it finished)
KINDS = {"prepare": ("prepare", "summary.parquet"), "replay": ("replay", "replays.parquet"),
         "eval": ("agent", "eval_results.parquet")}
PLAN, DONE, FAILED = "plan.json", "DONE", "FAILED"


def plan_key(kind: str, shards: list[str]) -> str:
    """A prepare or replay run's key: its planned shard keys, whatever their order."""
    return hashlib.sha256(f"{kind}:{','.join(sorted(shards))}".encode()).hexdigest()[:16]


def run_dir(home: DataHome, kind: str, key: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    return Path(home.root) / "runs" / kind / key


def start(home: DataHome, kind: str, key: str, shards: list[str], config, inputs: dict) -> Path:
    """Record a planned run (before its shards run); an end marker of an earlier run of the same plan is removed.
    `config`: a dict, or a config dataclass (recorded as its fields)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    folder = run_dir(home, kind, key)
    folder.mkdir(parents=True, exist_ok=True)
    for marker in (DONE, FAILED):
        (folder / marker).unlink(missing_ok=True)
    doc = {"kind": kind, "key": key, "shards": list(shards), "config": config, "inputs": inputs,
           "started_at": _now(), "host": socket.gethostname()}
    atomic_write_bytes(folder / PLAN, json.dumps(doc, sort_keys=True, default=str).encode())
    return folder


def start_prepare(home: DataHome, source: str, split: str, specs: list, config) -> str:
    """A prepare run over `specs` (prepare ShardSpecs): its source files by name with their sha256."""
    keys = [s.key for s in specs]
    files = {s.display_name or Path(s.path).name: s.file_sha256 for s in specs}
    key = plan_key("prepare", keys)
    start(home, "prepare", key, keys, config, {"source": str(source), "split": split, "files": files})
    return key


def start_replay(home: DataHome, split: str, dataset: str, prepare_dirs: list[str], shard_key, config) -> str:
    """A replay run of the prepared shards `prepare_dirs`; `shard_key(prepare shard, config)` names the replay
    shard of each (replay.verify.replay_key)."""
    names = [Path(d).name for d in prepare_dirs]
    keys = [shard_key(n, config) for n in names]
    key = plan_key("replay", keys)
    inputs = {"split": split, "dataset": dataset or "(the home's prepared split)", "prepare_shards": names}
    start(home, "replay", key, keys, config, inputs)
    return key


def start_eval(home: DataHome, tsv: str, tsv_sha256: str, shards: list, spec, agent_config, scoring) -> str:
    """An evaluation run over `shards` (EvalShards of one run id): the benchmark file, the model, the settings."""
    key = shards[0].run_id
    config = {"backend": dataclasses.asdict(spec), "agent": dataclasses.asdict(agent_config),
              "scoring": dataclasses.asdict(scoring)}
    inputs = {"benchmark": str(tsv), "tsv_sha256": tsv_sha256, "model": spec.model or "(none)",
              "backend": spec.name}
    start(home, "eval", key, [s.key for s in shards], config, inputs)
    return key


def finish(home: DataHome, kind: str, key: str, outputs: dict | None = None, error: str = "") -> None:
    """Record the end of a run: DONE with the versions it published, or FAILED with its error."""
    doc = {"finished_at": _now(), **({"error": error[:2000]} if error else {"outputs": outputs or {}})}
    atomic_write_bytes(run_dir(home, kind, key) / (FAILED if error else DONE), json.dumps(doc, sort_keys=True).encode())


@dataclass(frozen=True)
class StageRun:
    kind: str  # prepare / replay / eval
    key: str
    status: str  # done / failed / partial
    planned: int  # shards
    published: int  # of them, with a finished folder in this home
    config: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # versions published (DONE)
    started_at: str = ""
    host: str = ""
    error: str = ""  # FAILED's error


def stage_runs(home: DataHome) -> list[StageRun]:
    """Every recorded prepare, replay and evaluation run of the home, newest first within a kind."""
    found = []
    for kind, (table, part) in KINDS.items():
        folder = Path(home.root) / "runs" / kind
        docs = [(d, read_json(d / PLAN)) for d in folder.iterdir() if d.is_dir()] if folder.is_dir() else []
        docs = sorted(((d, p) for d, p in docs if p), key=lambda dp: dp[1].get("started_at", ""), reverse=True)
        for d, plan in docs:
            # shard names only ever name a folder of the table (never a path elsewhere)
            shards = [s for s in plan.get("shards", []) if isinstance(s, str) and "/" not in s
                      and s not in ("", ".", "..")]
            published = sum((Path(home.root) / "shards" / table / s / part).is_file() for s in shards)
            done, failed = read_json(d / DONE), read_json(d / FAILED)
            status = "done" if (d / DONE).exists() else "failed" if (d / FAILED).exists() else "partial"
            found.append(StageRun(kind, d.name, status, len(shards), published, plan.get("config") or {},
                                  plan.get("inputs") or {}, done.get("outputs") or {}, plan.get("started_at", ""),
                                  plan.get("host", ""), failed.get("error", "")))
    return found


def read_json(path: Path) -> dict:
    """A JSON object file's content; {} when missing, unreadable or not an object (a file being written)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
