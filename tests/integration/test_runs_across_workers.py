"""SFT runs that outlive their worker and span nodes, on CPU (the tiny Qwen2.5-VL, DeepSpeed ZeRO-2 over gloo),
with a moto S3 store as the only thing the "workers" (separate data homes) share.

- preemption: a run killed after step 3 on one worker is rerun on another with an empty home: it checks the
  dataset version out, finds the store's newest complete checkpoint (step 2, pushed in the background while
  training went on), resumes there, and its losses for steps 3..4 equal an uninterrupted run's;
- multi-node: 2 nodes x 1 rank (two node runs on 127.0.0.1, each its own home, meeting through the address
  node 0 published in the store) give the same losses as 1 node x 2 ranks, and each node pushes its part of
  every checkpoint (ZeRO-2's once-written model states on every node); a node whose peer never arrives
  fails (the rendezvous timeout) instead of waiting.
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from thyme_core import prepare
from thyme_core.base.home import DataHome
from thyme_core.pipeline import training
from thyme_core.runs import checkpoint, remote, rendezvous
from thyme_core.runs.launch import Nodes
from thyme_core.sft import launch
from thyme_core.sft.config import load_preset
from thyme_core.synth import write_dataset
from thyme_core.versions.pull import checkout
from thyme_core.versions.push import push

# 4 samples, 2 per step: 2 steps an epoch, 2 epochs; a checkpoint every 2 steps
CFG = {"splits": ["2round"], "epochs": 2, "nproc": 1, "micro_batch": 1, "global_batch": 2, "save_steps": 2,
       "learning_rate": 1e-3, "max_pixels": 16 * 28 * 28}


@pytest.fixture(scope="module")
def store(run_store):
    return run_store


@pytest.fixture(scope="module")
def dataset(store, tmp_path_factory):
    home = DataHome(tmp_path_factory.mktemp("prep-home")).ensure()
    src = home.root / "2round.parquet"
    write_dataset(src, "2round", 4, seed=5, width=320, height=240, workers=1)
    for spec in prepare.plan(str(src), "2round", prepare.PrepareConfig()):
        prepare.prepare_shard(spec, home, prepare.PrepareConfig())
    return f"data@{push(home, store, 'data').manifest}"


def _train(spec, nodes=Nodes()):
    lines = []
    rc = launch.launch(spec, on_line=lines.append, on_metrics=lambda m: lines.append(str(m)), nodes=nodes)
    return rc, lines


def _losses(spec):
    return [m["loss"] for m in launch.read_metrics(spec.run_dir)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, store, dataset):
    """An uninterrupted run of the same key, with no store to push to or resume from."""
    home = DataHome(tmp_path_factory.mktemp("ref-home"))
    data, _ = checkout(store, dataset, home)
    spec = launch.prepare_run(home, load_preset("sft_tiny_stage1", **CFG), data)
    rc, lines = _train(spec)
    assert rc == 0, "\n".join(lines[-30:])
    return spec.key, _losses(spec)


def test_a_rerun_on_an_empty_home_resumes_from_the_stores_checkpoint(tmp_path, store, dataset, reference):
    cfg = load_preset("sft_tiny_stage1", **CFG)
    first = training.prepare_sft(DataHome(tmp_path / "worker-a"), store, cfg, dataset)
    assert first.key == reference[0]  # keys see content, not homes
    os.environ["THYME_HOOKS"] = "tests.integration.test_train_sft:KillAfterStep3"
    try:
        rc, _ = _train(first)
    finally:
        del os.environ["THYME_HOOKS"]
    assert rc != 0 and remote.remote_steps(store, first.key, 1) == [2]  # step 3 never saved, step 2 uploaded

    second = training.prepare_sft(DataHome(tmp_path / "worker-b"), store, cfg, dataset)  # an empty home
    assert checkpoint.latest_step(second.run_dir, 1) == 2  # brought from the store
    rc, lines = _train(second)
    assert rc == 0, "\n".join(lines[-30:])
    assert any("'event': 'resumed', 'step': 2" in line for line in lines)
    resumed = launch.read_metrics(second.run_dir)
    assert [m["step"] for m in resumed] == [3, 4]
    assert [m["loss"] for m in resumed] == pytest.approx(reference[1][2:], rel=1e-4, abs=1e-5)


def test_two_nodes_of_one_rank_equal_one_node_of_two(tmp_path, store, dataset):
    cfg = load_preset("sft_tiny_stage1", **{**CFG, "nproc": 2})
    one = launch.prepare_run(DataHome(tmp_path / "one"), cfg, checkout(store, dataset, DataHome(tmp_path / "one"))[0])
    rc, lines = _train(one)
    assert rc == 0, "\n".join(lines[-30:])

    run_id = f"t-{uuid.uuid4().hex[:8]}"
    specs, results = [], {}
    for rank in range(2):
        home = DataHome(tmp_path / f"node{rank}")
        specs.append(launch.prepare_run(home, cfg.replace(nproc=1, nnodes=2), checkout(store, dataset, home)[0],
                                        store=store.uri))

    def node(rank):
        nodes = rendezvous.meet(store, run_id, 2, rank, timeout=60)
        results[rank] = _train(specs[rank], nodes)

    threads = [threading.Thread(target=node, args=(r,)) for r in (1, 0)]  # node 1 first: it waits for node 0
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0][0] == 0 and results[1][0] == 0, "\n".join(results[0][1][-30:] + results[1][1][-30:])
    assert _losses(specs[0]) == pytest.approx(_losses(one), rel=1e-5, abs=1e-6) and len(_losses(one)) == 4
    assert (specs[0].run_dir / "DONE").exists() and not (specs[1].run_dir / "DONE").exists()  # node 0 finishes
    # ZeRO-2 keeps its model states once: with node-local storage each node wrote its own copy and pushed
    # its part of every checkpoint (steps 2 and 4); a part holds what its node's ranks need to load
    assert remote.remote_steps(store, specs[0].key, 2) == [2, 4]
    for spec in specs:
        names = {p.name for p in (spec.run_dir / "checkpoints").rglob("*.pt")}
        assert "mp_rank_00_model_states.pt" in names, names


def test_a_node_whose_peer_never_arrives_fails_instead_of_waiting(tmp_path, store, dataset):
    cfg = load_preset("sft_tiny_stage1", **{**CFG, "nnodes": 2, "save_steps": 10})
    home = DataHome(tmp_path / "alone")
    spec = launch.prepare_run(home, cfg, checkout(store, dataset, home)[0])
    nodes = rendezvous.meet(store, f"t-{uuid.uuid4().hex[:8]}", 2, 0, timeout=10)
    rc, lines = _train(spec, nodes)
    assert rc != 0 and not (spec.run_dir / "DONE").exists()
    with pytest.raises(Exception, match="published no rendezvous address"):
        rendezvous.meet(store, f"t-{uuid.uuid4().hex[:8]}", 2, 1, timeout=1, poll=0.2)
