"""The model of a cluster evaluation goes through the store (thyme_core/cluster/shipped.py), run without Ray: a
folder on the driver is stored by content (a rerun uploads nothing) and reaches a worker whose home and cache
are empty only from the store, where it is loaded from the node's cache and gives a local evaluation's
results; a corrupted object is refused with no folder left to load; two pulls on one node at once are safe."""

import shutil
import threading
from pathlib import Path

import pytest

from tests.fakes import eval_on_workers, in_threads
from thyme_core import catalog
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.cluster import shipped, stored
from thyme_core.eval import evaluate
from thyme_core.model import ensure_tiny_model
from thyme_core.synth.benchmark import write_demo_benchmark
from thyme_core.versions.folders import folder_manifest, models_cache, push_folder
from thyme_core.versions.keys import object_key
from thyme_core.versions.store import LocalStore

ROWS = ("SELECT index, category, prediction, choice, answer, correct, stop_reason FROM eval_results "
        "ORDER BY index::INT")


class RecordingStore(LocalStore):
    """A local store that records the keys written to it."""

    def __init__(self, root):
        super().__init__(root)
        self.written: list[str] = []

    def put_file(self, key, path, sha256=None):
        self.written.append(key)
        return super().put_file(key, path, sha256)

    def put_bytes(self, key, data):
        self.written.append(key)
        return super().put_bytes(key, data)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model folder on the driver (the tiny model's files, copied out of the home that built it)."""
    root = tmp_path_factory.mktemp("model")
    folder = root / "driver" / "my-model"
    shutil.copytree(ensure_tiny_model(DataHome(root / "builder")), folder)
    return folder


def test_a_driver_model_folder_reaches_an_empty_worker_only_through_the_store(model, tmp_path, monkeypatch):
    model = Path(shutil.copytree(model, tmp_path / "driver" / "my-model"))
    tsv, responses = write_demo_benchmark(tmp_path / "driver", n=5)
    spec = BackendSpec("scripted", str(model), str(responses))
    agent = AgentConfig(isolation="none")
    local = DataHome(tmp_path / "local")
    for shard in evaluate.plan(tsv, spec, agent, shard_rows=2):
        evaluate.eval_shard(shard, local, spec, agent)

    store = RecordingStore(tmp_path / "store")
    files = shipped.ship_eval_files(store, str(tsv), str(responses), str(model))
    assert files.model == folder_manifest(model).sha256 and not store.list_keys("refs/")  # nothing named moved
    store.written.clear()
    assert shipped.ship_eval_files(store, str(tsv), str(responses), str(model)) == files and store.written == []
    assert shipped.ship_model(store, f"{push_folder(model, store, 'vlm').name}@latest") == files.model
    spec = shipped.for_workers(spec, files)
    shards = evaluate.plan(tsv, spec, agent, shard_rows=2)

    (tmp_path / "driver").rename(tmp_path / "driver-gone")
    monkeypatch.setenv(stored.SCRATCH_ENV, str(tmp_path / "worker"))
    rows = eval_on_workers(store, shards, spec, agent, files, tmp_path / "driver-home", ROWS)[1]
    assert len(rows) == 5 and rows == catalog.query(local, ROWS)[1]

    cached = models_cache(DataHome(tmp_path / "worker" / "thyme-worker-home")) / files.model
    assert folder_manifest(cached).sha256 == files.model
    # Tokenized by the model's own tokenizer, as locally (the spec's "model@<sha>" is no folder: the worker
    # could only run by loading the node's copy; the driver's folder is gone).
    tokens = "SELECT sample_id, total_tokens, token_ids FROM trajectories ORDER BY sample_id"
    assert eval_on_workers(store, shards, spec, agent, files, tmp_path / "driver-home", tokens)[1] == \
        catalog.query(local, tokens)[1]  # (the shards are finished: read from their markers, not run again)


def test_a_corrupted_model_object_is_refused_and_no_folder_is_left_to_load(model, tmp_path, monkeypatch):
    tsv, responses = write_demo_benchmark(tmp_path / "driver", n=2)
    store = LocalStore(tmp_path / "store")
    files = shipped.ship_eval_files(store, str(tsv), str(responses), str(model))
    spec, agent = shipped.for_workers(BackendSpec("scripted", str(model), str(responses)), files), AgentConfig()
    victim = next(f for f in folder_manifest(model).files if f.path == "config.json")
    store.put_bytes(object_key(victim.sha256), b'{"model_type": "not this model"}')
    monkeypatch.setenv(stored.SCRATCH_ENV, str(tmp_path / "node"))
    with pytest.raises(ThymeError, match="corrupted"):
        stored.eval_step(evaluate.plan(tsv, spec, agent, shard_rows=2)[0], spec, agent, store.uri, None, files)
    cache = models_cache(DataHome(tmp_path / "node" / "thyme-worker-home"))
    assert not (cache / files.model).exists() and not any((cache / ".tmp").iterdir())


class MeetingStore(LocalStore):
    """Each pull's first download waits until the other pull has started one too: both are mid-pull at once."""

    def __init__(self, root, stage_root: Path):
        super().__init__(root)
        self.stage_root, self.seen, self.lock, self.barrier = stage_root, set(), threading.Lock(), threading.Barrier(2)

    def download(self, key, dest):
        stage = Path(dest).relative_to(self.stage_root).parts[0]
        with self.lock:
            first = stage not in self.seen
            self.seen.add(stage)
        if first:
            self.barrier.wait(timeout=60)
        return super().download(key, dest)


def test_two_shards_pulling_the_model_on_one_node_at_once_get_one_whole_folder(model, tmp_path):
    sha = shipped.ship_model(LocalStore(tmp_path / "store"), str(model))
    node = DataHome(tmp_path / "node")
    store = MeetingStore(tmp_path / "store", models_cache(node) / ".tmp")
    got, errors = in_threads(lambda: shipped.model_copy(store, sha, node), 2)
    assert errors == [] and len(store.seen) == 2  # two separate stages were filled at once
    assert got[0] == got[1] == models_cache(node) / sha and folder_manifest(got[0]).sha256 == sha
    assert list((models_cache(node) / ".tmp").iterdir()) == []


def test_a_model_folder_stored_again_by_a_later_run_is_not_read_again(model, tmp_path, monkeypatch):
    """The driver stores a `--model` folder by content on every cluster eval: with its home, each file's hash is
    remembered by the file's identity, so a 15 GB model is read once, and a changed file is read again."""
    from thyme_core.prepare import digests

    folder = Path(shutil.copytree(model, tmp_path / "driver" / "my-model"))
    home, store = DataHome(tmp_path / "driver-home"), LocalStore(tmp_path / "store")
    monkeypatch.setattr(digests, "RACY_S", 0)  # (files written just now count as settled here)
    reads = []
    real = digests.file_sha256
    monkeypatch.setattr(digests, "file_sha256", lambda p, *a: reads.append(Path(p).name) or real(p, *a))
    files = sorted(p.name for p in folder.iterdir() if p.is_file())

    first = shipped.ship_model(store, str(folder), home)
    assert sorted(reads) == files
    reads.clear()
    assert shipped.ship_model(store, str(folder), home) == first and reads == []
    with open(folder / "config.json", "a") as f:
        f.write("\n")
    changed = shipped.ship_model(store, str(folder), home)
    assert reads == ["config.json"]
    assert changed != first and changed == folder_manifest(folder).sha256  # what an uncached hashing gives
