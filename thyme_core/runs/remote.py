"""Checkpoints in the store, so a run killed on one worker resumes on another with an empty home.

When a run's run.json names a store, the launcher process (not the ranks: storage code stays out of the
ranks' code version) pushes every checkpoint its node's first rank announces as COMPLETE, in a background thread, so
training does not wait: the folder's files are hard-linked into a private staging folder first (so pruning
the local copy cannot pull files from under the upload), uploaded as content-addressed objects, and only then
is its manifest written under checkpoints/<run key>/<tag>.world-<W>.json (W: the ranks that saved it;
DeepSpeed cannot load ZeRO optimizer states into another number of ranks, and an SFT run's key leaves the
rank layout out, so a restore takes only checkpoints of its own W). That manifest is the checkpoint's COMPLETE
marker in the store: a half-uploaded checkpoint has none and is never taken as the newest complete one.

A run of N nodes shares no disk: each node's launcher pushes its own part, the shards its ranks wrote, as
checkpoints/<run key>/<tag>.world-<W>.node-<i>-of-<N>.json, and a step counts in the store only once all N
parts are there. `restore` (before a launch) brings the newest complete checkpoint of the run from the store
into a run folder whose own are older: every part, merged (simple, and right whatever node a rerun's ranks
land on). The data order comes back with the step number (both trainers rebuild it from the config).
`launch` is how SFT and RL start their ranks: torchrun with the pushing wired in, the pushes drained after.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import threading
from pathlib import Path

from thyme_core.runs import checkpoint
from thyme_core.runs.launch import Nodes, run_torchrun

_TAG_PREFIX = "checkpoints/"
_PART_RE = re.compile(r"^step-(\d+)\.world-(\d+)(?:\.node-(\d+)-of-(\d+))?\.json$")


def part_name(world: int, nodes: Nodes = Nodes()) -> str:
    """The suffix of a checkpoint of `world` ranks in the store (with a node's part of it for several nodes)."""
    return f".world-{world}" + (f".node-{nodes.node_rank}-of-{nodes.nnodes}" if nodes.nnodes > 1 else "")


def _remote_key(run_key: str, tag: str, part: str) -> str:
    return f"{_TAG_PREFIX}{run_key}/{tag}{part}.json"


def _store_of(run_dir: Path):
    info_path = Path(run_dir) / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if not info.get("store"):
        return None, None
    from thyme_core.versions.store import open_store

    return open_store(info["store"]), info["key"]


class Uploader:
    """One background thread uploading checkpoints in the order they were saved."""

    def __init__(self, store, run_key: str, run_dir: Path, part: str):
        self.store, self.run_key, self.run_dir, self.part = store, run_key, Path(run_dir), part
        self.todo: queue.Queue = queue.Queue()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._work, name="checkpoint-upload", daemon=True)
        self.thread.start()

    def __call__(self, folder: Path) -> None:
        staged = self.run_dir / ".upload" / folder.name
        shutil.rmtree(staged, ignore_errors=True)
        try:
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            for src in files:
                dest = staged / src.relative_to(folder)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dest)
            whole = (folder / checkpoint.COMPLETE).is_file() and files == sorted(
                p for p in folder.rglob("*") if p.is_file())
        except FileNotFoundError:  # pruned while being staged: a newer checkpoint is on its way
            whole = False
        if whole:
            self.todo.put(staged)
        else:
            shutil.rmtree(staged, ignore_errors=True)

    def _work(self) -> None:
        from thyme_core.versions.folders import folder_manifest
        from thyme_core.versions.keys import object_key
        from thyme_core.versions.store import parallel_map

        while True:
            staged = self.todo.get()
            try:
                manifest = folder_manifest(staged, kind="checkpoint")

                def one(entry) -> None:
                    key = object_key(entry.sha256)
                    if not self.store.exists(key):
                        self.store.put_file(key, staged / entry.path, entry.sha256)

                parallel_map(one, list({f.sha256: f for f in manifest.files}.values()), 4)
                self.store.put_bytes(_remote_key(self.run_key, staged.name, self.part), manifest.to_bytes())
            except BaseException as exc:  # reported by drain(); a failed upload only loses a resume point
                self.errors.append(exc)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
                self.todo.task_done()

    def drain(self) -> None:
        self.todo.join()


_uploaders: dict[str, Uploader] = {}


def uploader_for(run_dir: Path, part: str) -> Uploader | None:
    """This process's uploader for the run's checkpoints named `part` (part_name; None: no store in run.json)."""
    key = f"{Path(run_dir).resolve()}{part}"
    if key not in _uploaders:
        store, run_key = _store_of(run_dir)
        if store is None:
            return None
        _uploaders[key] = Uploader(store, run_key, run_dir, part)
    return _uploaders[key]


def drain() -> list[BaseException]:
    """Wait for every queued upload of this process; returns the failures."""
    errors = []
    for up in _uploaders.values():
        up.drain()
        errors += up.errors
    return errors


def _complete_parts(store, run_key: str, world: int) -> dict[int, list[str]]:
    """step -> the manifest keys that make a checkpoint of `world` ranks whole in the store (one, or one per
    node once all N are there)."""
    prefix = f"{_TAG_PREFIX}{run_key}/"
    whole: dict[int, list[str]] = {}
    parts: dict[tuple[int, int], dict[int, str]] = {}
    for k in store.list_keys(prefix):
        m = _PART_RE.match(k[len(prefix):])
        if not m or int(m.group(2)) != world:
            continue
        step = int(m.group(1))
        if m.group(3) is None:
            whole[step] = [k]
        else:
            parts.setdefault((step, int(m.group(4))), {})[int(m.group(3))] = k
    for (step, n), got in parts.items():
        if step not in whole and sorted(got) == list(range(n)):
            whole[step] = [got[i] for i in range(n)]
    return whole


def remote_steps(store, run_key: str, world: int) -> list[int]:
    """The steps of the run with a complete checkpoint of `world` ranks in the store (every node's part)."""
    return sorted(_complete_parts(store, run_key, world))


def restore(run_dir: Path, world: int) -> int | None:
    """Bring the store's newest complete checkpoint of the run into a run folder whose own checkpoints are
    older (a fresh worker has none); returns its step, or None when nothing was brought."""
    store, run_key = _store_of(run_dir)
    if store is None:
        return None
    complete = _complete_parts(store, run_key, world)
    local = checkpoint.latest_step(run_dir, world) or 0
    if not complete or max(complete) <= local:
        return None
    step = max(complete)
    tag = checkpoint.tag(step)
    cache = Path(run_dir) / ".restore"
    folder = _pull(store, complete[step], cache)
    target = checkpoint.checkpoints_dir(run_dir) / tag
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(folder, target)
    shutil.rmtree(cache, ignore_errors=True)
    return step


def _pull(store, manifest_keys: list[str], cache: Path) -> Path:
    """The files of a checkpoint's manifests (its parts, merged; on a path two parts share, the first part's
    file: the copies DeepSpeed writes once per node), verified, in a fresh folder under `cache`."""
    import hashlib

    from thyme_core.base.fsio import atomic_dir
    from thyme_core.base.errors import ThymeError
    from thyme_core.versions.keys import object_key
    from thyme_core.versions.manifest import Manifest, sha256_file
    from thyme_core.versions.store import parallel_map

    manifests = [Manifest.from_bytes(store.get_bytes(k)) for k in manifest_keys]
    files = {}
    for manifest in manifests:
        for entry in manifest.files:
            files.setdefault(entry.path, entry)
    final = cache / hashlib.sha256(":".join(m.sha256 for m in manifests).encode()).hexdigest()[:32]
    with atomic_dir(final, cache / ".tmp") as stage:
        def one(entry) -> None:
            dest = stage / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            store.download(object_key(entry.sha256), dest)
            if sha256_file(dest) != entry.sha256:
                raise ThymeError(f"{store.uri}: checkpoint object {entry.sha256} ({entry.path}) is corrupted")

        parallel_map(one, list(files.values()), 4)
    return final


def upload(run_dir: Path, folder: Path, part: str) -> None:
    """Queue a COMPLETE checkpoint (or this node's part of it) for upload when the run has a store."""
    up = uploader_for(run_dir, part)
    if up is not None:
        up(folder)


def pushing(run_dir: Path, on_metrics, world: int, nodes: Nodes = Nodes()):
    """on_metrics for a launcher: checkpoint events of the ranks are queued for upload, then passed on."""
    def handle(record: dict) -> None:
        if record.get("event") == "checkpoint":
            upload(run_dir, Path(record["path"]), part_name(world, nodes))
        on_metrics(record)

    return handle


def launch(module: str, run_dir: Path, nproc: int, on_line, on_metrics, nodes: Nodes = Nodes()) -> int:
    """`torchrun -m module RUN_DIR` (launch.run_torchrun); with a store in run.json, every checkpoint the ranks
    announce is pushed there in the background by this process (the ranks never wait on it), and the pushes
    finish before this returns (also when the ranks died: what was complete still goes up). A node of a
    multi-node run pushes its own part (its ranks' shards). A node told at the rendezvous that node 0's run is
    finished starts no ranks (they would wait for a node 0 that never comes): 0, as for a finished run."""
    if nodes.finished:
        on_line(f"{run_dir.name}: node 0 says this run is finished; no ranks started on node {nodes.node_rank}")
        return 0
    handle = pushing(run_dir, on_metrics, nproc * nodes.nnodes, nodes)
    try:
        return run_torchrun(module, run_dir, nproc, on_line, handle, nodes)
    finally:
        for exc in drain():
            on_line(f"a checkpoint upload failed (the run goes on; a resume elsewhere starts earlier): {exc}")
