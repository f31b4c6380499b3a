"""Starting an RL run: its key and folder (`prepare_run`), then its steps (`train`) in-process or as torchrun
ranks launched like SFT's (runs/remote.launch: checkpoints pushed to a store as they are saved, a folder with
none restored from the store's newest, nodes meeting at node 0's rendezvous). The steps themselves are run.py
and entry.py; only they make the run key's code version, so a change here (or in the store code it reaches)
never makes a finished run look unfinished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import atomic_write_bytes
from thyme_core.base.home import DataHome
from thyme_core.model import resolve_model_path
from thyme_core.rl.config import RlConfig
from thyme_core.rl.data import load_prompts
from thyme_core.rl.rollout import RLPrompt
from thyme_core.rl.run import RlRunSpec, train_in_process, code_version, rl_dir, steps_done
from thyme_core.runs import folder, remote
from thyme_core.runs.launch import Nodes


def _image_identity(image: str, home: DataHome, data: DataHome) -> str:
    """A prompt image as the key sees it: relative to the home that holds it."""
    return folder.identity(image, data if Path(image).resolve().is_relative_to(data.root.resolve()) else home)


def _stored(home: DataHome, image) -> str:
    """A prompt image as a path string: bytes go to the home's image store (so prompts.jsonl can be re-read
    by the torchrun ranks and by a resumed run)."""
    if not isinstance(image, bytes):
        return str(image)
    from thyme_core.images.store import ImageStore, prepare_image
    from thyme_core.base.reasons import Rejected

    try:
        prepared = prepare_image(image)
    except Rejected as exc:
        raise ThymeError(f"unusable prompt image: {exc}") from None
    ImageStore(home.root, home.tmp_dir).put(prepared)
    return str(home.absolute(prepared.relpath))


def prepare_run(home: DataHome, cfg: RlConfig, prompts: list[RLPrompt] | None = None,
                data: DataHome | None = None, store: str | None = None) -> RlRunSpec:
    """Load the prompts (data.load_prompts from `data`, default the run's home, unless given), key the run,
    write its description once. With `store` (nproc >= 1), checkpoints are pushed there as they are saved, and
    a run folder without them starts from the store's newest (runs/remote.py)."""
    data = data or home
    prompts = prompts if prompts is not None else load_prompts(data, cfg.split, cfg.limit)
    if not prompts:
        raise ThymeError("an RL run needs at least one prompt")
    prompts = sorted((dataclasses.replace(p, image=_stored(home, p.image)) for p in prompts),
                     key=lambda p: p.prompt_id)
    model = resolve_model_path(cfg.model or None, home)
    # the prompts' content, not only their ids (hand-made prompts may reuse an id); images by home-relative path
    ids = hashlib.sha256(json.dumps([(p.prompt_id, p.question, p.solution, _image_identity(p.image, home, data))
                                     for p in prompts]).encode()).hexdigest()[:16]
    parts = [ids, cfg.replace(model=folder.identity(model, home)).config_hash(), code_version()]
    key = folder.run_key(parts)
    run_dir = rl_dir(home) / key
    resolved = cfg.replace(model=str(model))
    info = {"home": str(home.root), "key": key, "prompts": parts[0], "config": parts[1], "code": parts[2],
            "store": store}
    # config.json and prompts.jsonl before run.json, the marker that the folder is complete
    written = folder.write_once(run_dir, {
        "config.json": resolved.to_json().encode(),
        "prompts.jsonl": "".join(json.dumps({"id": p.prompt_id, "question": p.question, "solution": p.solution,
                                             "image": p.image}) + "\n" for p in prompts).encode(),
        "run.json": json.dumps(info).encode()}, marker="run.json")
    if not written and store and json.loads((run_dir / "run.json").read_text()).get("store") != store:
        atomic_write_bytes(run_dir / "run.json", json.dumps(info).encode())  # a store named on a later prepare
    done = steps_done(run_dir) >= cfg.max_steps
    if store and cfg.nproc >= 1 and not done:
        remote.restore(run_dir, cfg.world)
    return RlRunSpec(run_dir, key, resolved, prompts, done)


def train(home: DataHome, spec: RlRunSpec, judge=None, steer: Callable | None = None,
          on_metrics: Callable[[dict], None] | None = None, on_line: Callable[[str], None] = print,
          nodes: Nodes = Nodes()) -> dict:
    """Run (or resume) `spec` to max_steps; returns a summary. In-process (nproc 0), `steer(backend)` may add
    logits processors and `judge` replaces the one from the environment; with nproc >= 1 the ranks take them
    from THYME_HOOKS. `on_metrics` sees each step's record, `on_line` the ranks' other output. `nodes`: this
    process's node of a multi-node run (runs/rendezvous.meet); only node 0 ends with DONE."""
    cfg, run_dir = spec.config, spec.run_dir
    summary = {"key": spec.key, "run_dir": str(run_dir), "final": str(run_dir / "final"), "skipped": spec.done}
    if spec.done or nodes.finished:  # finished: node 0 said at the rendezvous that its run is done
        return {**summary, "skipped": True, "steps": steps_done(run_dir) or cfg.max_steps, "resumed_from": None}
    if nodes.nnodes != max(cfg.nnodes, 1):
        raise ThymeError(f"the run has nnodes {cfg.nnodes} but was launched as a node of {nodes.nnodes}")
    if cfg.nproc == 0:
        resumed = train_in_process(home, spec, judge, steer, on_metrics)
    else:
        if judge is not None or steer is not None:
            raise ThymeError("with nproc >= 1 the ranks take steer/judge from THYME_HOOKS, not from arguments")
        from thyme_core.runs.checkpoint import latest_step

        resumed = latest_step(run_dir, cfg.world)
        # checkpoint events (pushed to the store by remote.launch) are not step records
        steps_only = lambda m: None if m.get("event") == "checkpoint" or on_metrics is None else on_metrics(m)
        code = remote.launch("thyme_core.rl.entry", run_dir, cfg.nproc, on_line, steps_only, nodes)
        if code != 0 or (nodes.node_rank == 0 and not (run_dir / "DONE").exists()):
            raise RuntimeError(f"RL ranks exited with code {code} (run folder {run_dir})")
    return {**summary, "steps": cfg.max_steps, "resumed_from": resumed}
