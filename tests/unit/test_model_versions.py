"""Model versions, dataset checkouts, stage results and lineage in a local store (thyme_core.versions.folders,
versions.pull.checkout, pipeline.stages, versions.lineage), and checkpoints in the store (runs.remote)."""

from __future__ import annotations

import json

import pytest

from tests.fakes import in_threads, make_home
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.pipeline import stages
from thyme_core.runs import checkpoint, remote
from thyme_core.versions import refs
from thyme_core.versions.folders import folder_manifest, pull_folder, push_folder, resolve_model
from thyme_core.versions.keys import manifest_key, object_key
from thyme_core.versions.lineage import query_lineage
from thyme_core.versions.manifest import Manifest
from thyme_core.versions.pull import checkout
from thyme_core.versions.push import push
from thyme_core.versions.store import open_store


def weights(folder, scale=1):
    """A stand-in HF folder: config, two safetensors shards and their index, tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "hidden_size": 64}))
    for i in (1, 2):
        (folder / f"model-0000{i}-of-00002.safetensors").write_bytes(bytes([i * scale % 256]) * 5000)
    (folder / "model.safetensors.index.json").write_text("{}")
    (folder / "tokenizer.json").write_text('{"v": 1}')
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk").write_text("not part of the model")
    return folder


def test_a_model_folder_round_trips_by_content_and_is_cached(tmp_path):
    store = open_store(str(tmp_path / "store"))
    src = weights(tmp_path / "final")
    lineage = {"stage": "sft1", "inputs": {"dataset": "d@abc"}, "flow_run": "run-1"}
    first = push_folder(src, store, "m", lineage=lineage)
    assert first.objects == 5 and first.uploaded == 5  # config, two shards, index, tokenizer (no .cache)
    home = DataHome(tmp_path / "worker").ensure()
    name, sha, got = pull_folder(store, "m@latest", home.root / "models" / "store")
    assert (name, sha) == ("m", first.manifest) and got.name == sha
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in src.iterdir() if p.name != ".cache")
    assert (got / "model-00002-of-00002.safetensors").read_bytes() == (src / "model-00002-of-00002.safetensors").read_bytes()
    # cached by manifest hash: a second pull downloads nothing (the objects may even be gone)
    for f in Manifest.from_bytes(store.get_bytes(manifest_key(sha))).files:
        (tmp_path / "store" / object_key(f.sha256)).unlink(missing_ok=True)
    assert pull_folder(store, f"m@{sha[:12]}", home.root / "models" / "store")[2] == got
    # the same content pushed again moves nothing; the lineage is in the ref's history
    assert push_folder(src, store, "m").unchanged
    assert refs.versions(store, "m")[0]["lineage"] == lineage
    assert resolve_model(f"m@{sha}", home, store) == (str(got), sha)
    assert resolve_model(str(src), home, store) == (str(src), None)  # a folder stays a folder


def test_model_manifests_never_equal_dataset_manifests(tmp_path):
    folder = weights(tmp_path / "w")
    model = folder_manifest(folder)
    as_dataset = Manifest(model.files)  # the same files, kind dataset
    assert model.sha256 != as_dataset.sha256 and b'"kind"' not in as_dataset.to_bytes()
    assert Manifest.from_bytes(model.to_bytes()).kind == "model"


def test_two_pulls_of_one_version_at_once_both_get_the_complete_folder(tmp_path):
    store = open_store(str(tmp_path / "store"))
    sha = push_folder(weights(tmp_path / "w"), store, "m").manifest
    cache = tmp_path / "cache"
    got, errors = in_threads(lambda: pull_folder(store, "m", cache)[2], 4)
    assert not errors and len(set(got)) == 1
    assert folder_manifest(cache / sha).sha256 == sha  # complete and verified
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [sha]


def test_checkout_uses_the_home_that_holds_the_version_else_a_cache(tmp_path):
    store = open_store(str(tmp_path / "store"))
    home = make_home(tmp_path / "home")
    spec = f"d@{push(home, store, 'd').manifest}"
    assert checkout(store, spec, home) == (home, spec.split("@")[1])  # no copy when it is the home itself
    other = DataHome(tmp_path / "worker").ensure()
    got, sha = checkout(store, spec, other)
    assert got.root == other.root / "datasets" / sha and (got.root / "catalog.duckdb").is_file()
    assert checkout(store, spec, other)[0] == got  # cached


def test_a_stage_is_done_only_once_its_result_is_recorded(tmp_path):
    store = open_store(str(tmp_path / "store"))
    key = stages.stage_key("sft", dataset="a" * 64, model="tiny", config="c", code="x")
    assert key == stages.stage_key("sft", code="x", config="c", model="tiny", dataset="a" * 64)  # order-free
    assert key != stages.stage_key("sft", dataset="a" * 64, model="tiny", config="c", code="y")
    assert stages.published(store, key) is None
    stages.record(store, key, "sft1", {"model": "m@123"}, "flow-1")
    assert stages.published(store, key)["outputs"] == {"model": "m@123"}
    with pytest.raises(ThymeError, match="is a version: a store is needed"):
        stages.model_identity(None, "m@latest")


def test_lineage_is_queryable_with_sql(tmp_path):
    store = open_store(str(tmp_path / "store"))
    push_folder(weights(tmp_path / "a"), store, "d-sft1", lineage={"stage": "sft1", "inputs": {"dataset": "d@1"},
                                                                     "code": "c0de", "flow_run": "fr-1"})
    push_folder(weights(tmp_path / "b", scale=3), store, "d-sft2", lineage={"stage": "sft2", "inputs": {"model": "d-sft1@x"}})
    cols, rows = query_lineage(store, "SELECT name, kind, stage, inputs, code, flow_run FROM versions ORDER BY name")
    assert rows == [("d-sft1", "model", "sft1", '{"dataset": "d@1"}', "c0de", "fr-1"),
                    ("d-sft2", "model", "sft2", '{"model": "d-sft1@x"}', None, None)]


def _checkpoint(run_dir, step, files=None, world=1):
    folder = checkpoint.checkpoints_dir(run_dir) / checkpoint.tag(step)
    folder.mkdir(parents=True)
    for name, data in (files or {"mp_rank_00_model_states.pt": bytes([step]) * 1000}).items():
        (folder / name).write_bytes(data)
    checkpoint.mark_complete(run_dir, step, {"world": world})
    return folder


def test_checkpoints_reach_the_store_and_only_complete_ones_are_resumed(tmp_path):
    store_root = tmp_path / "store"
    run_a, run_b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    for run in (run_a, run_b):
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"key": "k1", "store": str(store_root)}))
    whole = remote.part_name(1)
    remote.upload(run_a, _checkpoint(run_a, 2), whole)
    later = _checkpoint(run_a, 4)
    checkpoint.prune(run_a, 1)  # the local copy of step 2 goes; its upload was staged before
    remote.upload(run_a, later, whole)
    assert remote.drain() == []
    store = open_store(str(store_root))
    assert remote.remote_steps(store, "k1", 1) == [2, 4]
    # a half-uploaded checkpoint (objects but no manifest) is not a resume point
    store.put_bytes(object_key("f" * 64), b"partial")
    assert remote.remote_steps(store, "k1", 1) == [2, 4]
    # nor one saved by another number of ranks (ZeRO cannot repartition its optimizer states)
    assert remote.remote_steps(store, "k1", 2) == [] and remote.restore(run_b, 2) is None
    assert remote.restore(run_b, 1) == 4
    restored = checkpoint.checkpoints_dir(run_b) / checkpoint.tag(4)
    assert checkpoint.latest_step(run_b) == 4
    assert (restored / "mp_rank_00_model_states.pt").read_bytes() == bytes([4]) * 1000
    assert remote.restore(run_b, 1) is None  # nothing newer than what it holds


def test_a_multi_node_checkpoint_counts_once_every_node_pushed_its_part_and_restores_whole(tmp_path):
    """Two nodes share no disk: each pushes its ranks' shards; a step with one part is no resume point; a
    restore brings both parts into one folder (a rerun's ranks may land on other nodes)."""
    from thyme_core.runs.launch import Nodes

    store_root = tmp_path / "store"
    homes = [tmp_path / f"node{i}" / "run" for i in range(3)]
    for run in homes:
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"key": "k2", "store": str(store_root)}))
    nodes = [Nodes(2, i, "127.0.0.1:1") for i in range(2)]

    def part(i, step):  # node i's ranks are 2i and 2i+1 of 4; each node writes its own model-states copy
        files = {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt": bytes([step, r]) * 100 for r in (2 * i, 2 * i + 1)}
        files["mp_rank_00_model_states.pt"] = bytes([step, 9]) * 100
        return _checkpoint(homes[i], step, files, world=4)

    remote.upload(homes[0], part(0, 1), remote.part_name(4, nodes[0]))
    remote.upload(homes[1], part(1, 1), remote.part_name(4, nodes[1]))
    remote.upload(homes[0], part(0, 2), remote.part_name(4, nodes[0]))  # node 1 died before pushing step 2
    assert remote.drain() == []
    store = open_store(str(store_root))
    assert remote.remote_steps(store, "k2", 4) == [1]
    assert remote.restore(homes[2], 4) == 1
    got = sorted(p.name for p in (checkpoint.checkpoints_dir(homes[2]) / checkpoint.tag(1)).iterdir())
    assert got == ["COMPLETE", "mp_rank_00_model_states.pt"] + [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt"
                                                                for r in range(4)]
    assert checkpoint.latest_step(homes[2], 4) == 1 and checkpoint.latest_step(homes[2], 2) is None


def test_ranks_resume_from_the_newest_step_every_node_holds():
    assert checkpoint.common_step([[1, 2], [1]]) == 1
    assert checkpoint.common_step([[2], [1]]) is None
    assert checkpoint.common_step([[3, 4], [3, 4], [4]]) == 4


def test_a_node_told_the_run_is_finished_starts_no_ranks_in_the_shared_launcher(tmp_path):
    # The skip lives in runs/remote.launch, which SFT and RL both launch through: a library caller holding a
    # `finished` verdict from the rendezvous must not start ranks that wait for a node 0 that never comes.
    from thyme_core.runs.launch import Nodes

    lines = []
    code = remote.launch("no_such_module_would_fail_if_started", tmp_path, 1, lines.append, None,
                         Nodes(nnodes=2, node_rank=1, endpoint="127.0.0.1:1", rdzv_timeout=5, run_id="r", finished=True))
    assert code == 0 and len(lines) == 1 and "finished" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing started, nothing written
