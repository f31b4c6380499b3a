"""Stages that take versions and give versions: their keys, their inputs pulled into a worker's home, and
their outputs published to the store with their lineage.

A training stage takes `dataset=NAME@HASH` (and a start model, a folder or `NAME@HASH`); on the worker it
checks the dataset out into its own home (versions/pull.checkout: cached by manifest hash) and pulls the
model (versions/folders: the same), trains, and publishes the final weights as a model version whose ref
history entry records the lineage: input versions, config hash, code version, Prefect flow run.
The keys here are those the pipeline computes before dispatching (pipeline/stages.py): inputs by content,
so a key is the same on every worker.
"""

from __future__ import annotations

from pathlib import Path

from thyme_core.base import versioning
from thyme_core.base.home import DataHome
from thyme_core.pipeline.stages import model_identity, source_fingerprint, stage_key, version_sha
from thyme_core.versions.folders import push_folder, resolve_model
from thyme_core.versions.keys import Store
from thyme_core.versions.manifest import sha256_file
from thyme_core.versions.pull import checkout


def sft_key(store: Store, cfg, dataset: str) -> str:
    """SFT stage key: dataset version, start model, config (without where it starts from), code version."""
    from thyme_core.sft import launch

    start = cfg.model if cfg.stage == 1 else cfg.init_from
    return stage_key("sft", sft_stage=cfg.stage, dataset=version_sha(store, dataset),
                     model=model_identity(store, start),
                     config=cfg.replace(model=None, init_from=None, dataset="").config_hash(),
                     code=launch.code_version(cfg))


def prepare_sft(home: DataHome, store: Store, cfg, dataset: str):
    """The run of an SFT stage on this worker: the dataset checked out, the start model pulled."""
    from thyme_core.sft import launch

    data, _ = checkout(store, dataset, home)
    field = "model" if cfg.stage == 1 else "init_from"
    path, _ = resolve_model(getattr(cfg, field), home, store)
    return launch.prepare_run(home, cfg.replace(**{field: path}, dataset=dataset), data, store.uri)


def rl_key(store: Store, cfg, dataset: str) -> str:
    from thyme_core.rl import run as rl_run

    return stage_key("rl", dataset=version_sha(store, dataset), model=model_identity(store, cfg.model),
                     config=cfg.replace(model="", dataset="").config_hash(), code=rl_run.code_version())


def prepare_rl(home: DataHome, store: Store, cfg, dataset: str):
    """The run of an RL stage on this worker: prompts from the checked-out dataset, checkpoints via the store."""
    from thyme_core.rl import launch as rl_launch

    data, _ = checkout(store, dataset, home)
    path, _ = resolve_model(cfg.model or None, home, store)
    return rl_launch.prepare_run(home, cfg.replace(model=path or "", dataset=dataset), data=data, store=store.uri)


def prepare_key(source: str, split: str, config) -> str | None:
    """None for a source the key cannot see (s3://): such a stage always runs (its shards skip themselves)."""
    from thyme_core.prepare import shards

    files = source_fingerprint(source)
    if files is None:
        return None
    return stage_key("prepare", source=files, split=split, config=config, code=shards.code_version())


def replay_key(store: Store, dataset: str, split: str, config) -> str:
    from thyme_core.replay import verify

    return stage_key("replay", dataset=version_sha(store, dataset), split=split, config=config,
                     code=verify.code_version())


def eval_key(store: Store, tsv: str, model: str, params: dict) -> str:
    """Evaluation: the benchmark file's content, the model version, every agent/backend parameter."""
    return stage_key("evaluate", tsv=sha256_file(Path(tsv)), model=model_identity(store, model or None),
                     params={k: v for k, v in sorted(params.items()) if k not in ("home", "store", "model", "tsv")},
                     code=versioning.code_version("thyme_core.eval.evaluate"))


def lineage(stage: str, key: str | None, inputs: dict, run_dir: Path, flow_run: str | None) -> dict:
    """What a version was made from, as its ref history entry records it: the input versions, and the run's
    config hash, code version and key (from its run.json), and the Prefect flow run that made it."""
    import json

    info = json.loads((Path(run_dir) / "run.json").read_text())
    return {"stage": stage, "stage_key": key, "inputs": inputs, "config": info.get("config"),
            "code": info.get("code"), "run": info.get("key"), "flow_run": flow_run}


def publish_model(store: Store, folder: Path, name: str, record: dict) -> str:
    """Push a final weights folder as a model version NAME (tag latest); returns NAME@SHA."""
    result = push_folder(Path(folder), store, name, kind="model", lineage=record)
    return f"{name}@{result.manifest}"


def code_of(stage: str) -> str:
    """The code version a data stage's outputs depend on (prepare, replay), for its lineage."""
    if stage == "prepare":
        from thyme_core.prepare import shards

        return shards.code_version()
    from thyme_core.replay import verify

    return verify.code_version()
