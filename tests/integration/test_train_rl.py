"""RL in the DeepSpeed mode: `torchrun` ranks, ZeRO-3 (gloo, CPU), the tiny Qwen2.5-VL, the real sandbox.

The ranks steer the random tiny model through scripts (THYME_HOOKS -> `Hooks` below; member 0 answers
right, member 1 wrong, both crop in the sandbox) and judge with a fixed verdict. Checked:
- the same first step as the one-process mode (plain AdamW, same rollouts): the same rewards, loss and
  gradient norm, so the per-rank scaling and the lockstep passes add up to the same update;
- every rank's rollouts land in the catalog (two prompts per step, one per rank);
- the rollout engine follows the policy (weights synced after each update: the sync counts every tensor);
- preemption: a run whose ranks are SIGKILLed right after step 1's checkpoint (pushed to an S3 store in the
  background) is rerun on another "worker" with an empty home: it finds the store's checkpoint, runs only step
  2, and that step's record equals an uninterrupted run's (the one-process run's); its final weights differ
  from the start model's;
- multi-node: 2 nodes x 1 rank (two node runs on 127.0.0.1, each its own home, meeting through the address
  node 0 published in the store) take the same first step as 1 node x 2 ranks; each node pushes its part of
  the checkpoint; SIGKILLed after step 1, the run is rerun on two empty homes: both bring every part from the
  store and run step 2, equal to the uninterrupted step 2; node 0 holds every rank's rollouts; rerun once
  finished, node 0 tells node 1 at the rendezvous and neither starts ranks; a node whose peer never arrives
  fails within the rendezvous timeout; nodes whose start weights differ both stop before the first step;
- a judge outage on one rank's prompt: that rank keeps nothing and runs zero-weighted padding passes (so the
  ZeRO-3 collectives line up), and the update still equals the one-process one (with a frozen vision tower,
  and gradient checkpointing on the ranks);
- `thyme train-rl` through a real Prefect server on prepared data, and the same command skipped.
"""

import json
import os
import signal
import threading
import uuid

import pytest
import torch

from tests.fakes import RL_QUESTION as QUESTION, red_png as image_bytes, steer
from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.rl import launch as rl_launch
from thyme_core.rl import run as rl_run
from thyme_core.rl.config import load_preset
from thyme_core.rl.judge import JudgeFailure, StaticJudge, Verdict
from thyme_core.rl.rollout import RLPrompt
from thyme_core.runs import checkpoint, remote, rendezvous
from thyme_core.runs.launch import Nodes

def _shade(i: int) -> bytes:
    """A red image of its own per prompt, so each rank's crops are its own (different bytes, different paths)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (300, 240), (210, 40 + 10 * i, 40)).save(buf, "PNG")
    return buf.getvalue()


PROMPTS = [RLPrompt(f"p{i}", _shade(i), QUESTION, "A") for i in range(2)]
SETTINGS = dict(group_size=2, prompts_per_step=2, max_new_tokens=400, max_length=1200, save_steps=1)


class Hooks:
    steer = staticmethod(steer)

    @staticmethod
    def judge():
        return StaticJudge(1.0)


class KillAfterStep1(Hooks):
    """Every rank SIGKILLs itself once step 1's checkpoint is complete (as a preempted node would die)."""

    @staticmethod
    def after_step(step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGKILL)


class PickyJudge(StaticJudge):
    """Times out on the second prompt's questions, judges the rest 1.0."""

    def ask(self, messages, kind="yes_no"):
        self.calls += 1
        return Verdict(None, JudgeFailure.TIMEOUT) if "(second)" in json.dumps(messages) else Verdict(1.0, "")


class PickyHooks(Hooks):
    @staticmethod
    def judge():
        return PickyJudge()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return DataHome(tmp_path_factory.mktemp("rl_home")).ensure()


def _launch(home, cfg, lines, store=None, nodes=Nodes()):
    spec = rl_launch.prepare_run(home, cfg, PROMPTS, store=store)
    metrics = []
    try:
        rl_launch.train(home, spec, on_metrics=metrics.append, on_line=lines.append, nodes=nodes)
    finally:
        print("\n".join(lines[-60:]))
    return spec, metrics


class _hooks:
    """THYME_HOOKS for the ranks of a module-scoped run (monkeypatch is per test)."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        os.environ["THYME_HOOKS"] = f"tests.integration.test_train_rl:{self.name}"

    def __exit__(self, *exc):
        del os.environ["THYME_HOOKS"]


# two ZeRO-3 ranks, 2 steps, a checkpoint after each
RANKS = dict(max_steps=2, nproc=2, deepspeed="zero3", **SETTINGS)


@pytest.fixture(scope="module")
def killed(home, run_store):
    """1 node x 2 ranks, SIGKILLed right after step 1's checkpoint, pushing to the store: (spec, its records)."""
    lines: list[str] = []
    with _hooks("KillAfterStep1"), pytest.raises(RuntimeError, match="exited with code"):
        _launch(home, load_preset("rl_tiny", **RANKS), lines, store=run_store.uri)
    spec = rl_launch.prepare_run(home, load_preset("rl_tiny", **RANKS), PROMPTS, store=run_store.uri)
    return spec, rl_run.read_metrics(spec.run_dir)


@pytest.fixture(scope="module")
def solo(home):
    """The uninterrupted reference: one plain process (no DeepSpeed), 2 steps: its records."""
    with _hooks("Hooks"):
        spec = rl_launch.prepare_run(home, load_preset("rl_tiny", max_steps=2, nproc=0, **SETTINGS), PROMPTS)
        records = []
        rl_launch.train(home, spec, on_metrics=records.append)
    return records


def _nodes(root, run_store, hooks_name: str):
    """One run of 2 nodes x 1 rank on 127.0.0.1, node k in root/node<k> (its own home), meeting through the
    store: {rank: (spec, records) or the exception}."""
    cfg = load_preset("rl_tiny", **{**RANKS, "nproc": 1, "nnodes": 2})
    run_id, results = f"rl-{uuid.uuid4().hex[:8]}", {}

    def node(rank):
        home = DataHome(root / f"node{rank}").ensure()
        try:
            spec = rl_launch.prepare_run(home, cfg, PROMPTS, store=run_store.uri)
            nodes = rendezvous.meet(run_store, run_id, 2, rank, timeout=60, finished=spec.done)
            results[rank] = _launch(home, cfg, [], store=run_store.uri, nodes=nodes)
        except Exception as exc:  # noqa: BLE001 - the callers check
            results[rank] = exc

    with _hooks(hooks_name):
        threads = [threading.Thread(target=node, args=(r,)) for r in (1, 0)]  # node 1 first: it waits for node 0
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, run_store):
    """2 nodes x 1 rank, each its own home, SIGKILLed right after step 1, then rerun on two empty homes:
    {"first": node 0's spec and records of the killed run, "pushed": the store's steps after it,
    "root": the rerun's homes, "again": {rank: (spec, metrics)} of the rerun}."""
    cfg = load_preset("rl_tiny", **{**RANKS, "nproc": 1, "nnodes": 2})
    first_root = tmp_path_factory.mktemp("rl-nodes")
    first = _nodes(first_root, run_store, "KillAfterStep1")
    assert all(isinstance(first[r], RuntimeError) for r in (0, 1)), first
    spec = rl_launch.prepare_run(DataHome(first_root / "node0"), cfg, PROMPTS, store=run_store.uri)
    pushed = remote.remote_steps(run_store, spec.key, 2)
    root = tmp_path_factory.mktemp("rl-nodes-again")
    again = _nodes(root, run_store, "Hooks")
    assert not [r for r in again.values() if isinstance(r, Exception)], again
    return {"first": (spec, rl_run.read_metrics(spec.run_dir)), "pushed": pushed, "root": root, "again": again}


def _same_step(a, b):
    for k in ("reward_mean", "kept", "groups", "first_ratio_mean", "first_kl_mean", "tokens"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k
    for k in ("loss", "pg_loss", "grad_norm"):
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k


def test_zero3_two_ranks_match_one_process(home, killed, solo):
    spec, first = killed
    assert [m["step"] for m in first] == [1] and not (spec.run_dir / "DONE").exists()
    # step 1 of two ZeRO-3 ranks == step 1 of one plain process: same rollouts, loss and gradient
    a, b = solo[0], first[0]
    assert b["ranks"] == 2 and a["ranks"] == 1
    _same_step(a, b)
    assert a["first_ratio_mean"] == pytest.approx(1.0, abs=1e-6) and a["updated"] == 1
    # both ranks' rollouts are in the catalog: 2 prompts x 2 members
    _, rows = catalog.query(home, "SELECT step, count(*), count(DISTINCT prompt_id), sum(kept::INT) "
                                  f"FROM rl_rollouts WHERE run = 'rl-{spec.key}' GROUP BY step ORDER BY step")
    assert rows == [(1, 4, 2, 4)]
    # with their reward parts (gathered from both ranks with the rewards)
    _, rows = catalog.query(home, "SELECT count(reward_format), count(reward_accuracy) FROM rl_rollouts "
                                  f"WHERE run = 'rl-{spec.key}'")
    assert rows == [(4, 4)]


def test_a_killed_run_resumes_on_an_empty_home_from_the_stores_checkpoint(tmp_path, killed, solo, run_store,
                                                                         monkeypatch):
    spec, _ = killed
    assert remote.remote_steps(run_store, spec.key, 2) == [1]  # pushed in the background before the ranks died
    monkeypatch.setenv("THYME_HOOKS", "tests.integration.test_train_rl:Hooks")
    other = DataHome(tmp_path / "worker-b").ensure()
    again = rl_launch.prepare_run(other, load_preset("rl_tiny", **RANKS), PROMPTS, store=run_store.uri)
    assert again.key == spec.key and checkpoint.latest_step(again.run_dir, 2) == 1  # brought from the store
    lines: list[str] = []
    again, resumed = _launch(other, load_preset("rl_tiny", **RANKS), lines, store=run_store.uri)
    assert [m.get("event") for m in resumed] == ["resumed", None] and resumed[0]["step"] == 1
    assert json.loads((again.run_dir / "DONE").read_text()) == {"steps": 2}
    # the resumed step is the uninterrupted run's step 2: the same prompts, rollouts and update
    records = rl_run.read_metrics(again.run_dir)
    assert [m["step"] for m in records] == [2]
    _same_step(records[0], solo[1])
    assert records[0]["sync_tensors"] > 0  # the rollout engine followed the policy
    _, rows = catalog.query(other, "SELECT step, count(*), count(DISTINCT prompt_id) FROM rl_rollouts "
                                   f"WHERE run = 'rl-{again.key}' GROUP BY step ORDER BY step")
    assert rows == [(2, 4, 2)]

    # the final weights moved away from the start model
    from safetensors.torch import load_file

    start = load_file(str(next((other.root / "models").rglob("model.safetensors"))))
    final = load_file(str(again.run_dir / "final" / "model.safetensors"))
    moved = [k for k in final if k in start and not torch.equal(start[k].float(), final[k].float())]
    assert moved, "no weight changed"


def test_two_nodes_of_one_rank_take_the_steps_of_one_node_of_two(killed, two_nodes, solo, run_store):
    spec, records = two_nodes["first"]
    assert [m["step"] for m in records] == [1] and records[0]["ranks"] == 2
    _same_step(records[0], killed[1][0])
    # each node pushed its part of step 1 (its rank's shards): the step counts only with both
    parts = sorted(k.rsplit("/", 1)[1] for k in run_store.list_keys(f"checkpoints/{spec.key}/step-0000001"))
    assert parts == ["step-0000001.world-2.node-0-of-2.json", "step-0000001.world-2.node-1-of-2.json"]
    assert two_nodes["pushed"] == [1]
    # rerun on two empty homes: both brought step 1 from the store and ran step 2, the uninterrupted one's
    again = two_nodes["again"]
    assert [m.get("event") for m in again[0][1]] == ["resumed", None] and again[0][1][0]["step"] == 1
    spec0, spec1 = again[0][0], again[1][0]
    assert spec0.key == spec.key and [m["step"] for m in rl_run.read_metrics(spec0.run_dir)] == [2]
    _same_step(rl_run.read_metrics(spec0.run_dir)[0], solo[1])
    # node 0 holds the run's records, every rank's rollouts and DONE; node 1 only took part
    home0 = DataHome(two_nodes["root"] / "node0")
    _, rows = catalog.query(home0, "SELECT step, count(*), count(DISTINCT prompt_id) FROM rl_rollouts "
                                   f"WHERE run = 'rl-{spec0.key}' GROUP BY step ORDER BY step")
    assert rows == [(2, 4, 2)]
    # and every image those rollouts fed back (node 1's crops came with its rollouts)
    _, rows = catalog.query(home0, "SELECT DISTINCT unnest(image_paths) FROM trajectories "
                                   f"WHERE run_id = 'rl-{spec0.key}'")
    assert len(rows) > 1 and all((home0.root / p).is_file() for (p,) in rows), rows
    assert (spec0.run_dir / "DONE").exists() and not (spec1.run_dir / "DONE").exists()
    assert remote.remote_steps(run_store, spec.key, 2) == [1, 2]


def test_a_finished_multi_node_run_rerun_starts_no_ranks_on_any_node(two_nodes, run_store):
    """Node 0's home says the run is done; node 1's does not (it never holds DONE): node 0 says so at the
    rendezvous, so node 1 skips instead of starting ranks that wait for a node 0 that starts none."""
    results = _nodes(two_nodes["root"], run_store, "Hooks")
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert results[0][1] == [] and results[1][1] == []  # no step records, no resume: no ranks ran


def test_an_rl_node_whose_peer_never_arrives_fails_within_the_timeout(tmp_path, run_store, monkeypatch):
    monkeypatch.setenv("THYME_HOOKS", "tests.integration.test_train_rl:Hooks")
    home = DataHome(tmp_path / "alone").ensure()
    cfg = load_preset("rl_tiny", **{**RANKS, "nproc": 1, "nnodes": 2})
    nodes = rendezvous.meet(run_store, f"rl-{uuid.uuid4().hex[:8]}", 2, 0, timeout=10)
    with pytest.raises(RuntimeError, match="exited with code"):  # after the 10 s join timeout
        _launch(home, cfg, [], nodes=nodes)
    assert not (rl_launch.prepare_run(home, cfg, PROMPTS).run_dir / "DONE").exists()


def test_nodes_that_loaded_different_start_weights_both_stop_before_training(tmp_path, run_store, monkeypatch):
    """Node 1's home holds another model under the same path (its run key is node 0's): both nodes stop at the
    start with the rank and the fact named, instead of rolling out two models in one run."""
    from thyme_core.model import ensure_tiny_model

    monkeypatch.setenv("THYME_HOOKS", "tests.integration.test_train_rl:Hooks")
    cfg = load_preset("rl_tiny", **{**RANKS, "nproc": 1, "nnodes": 2, "seed": 11})  # a run of its own
    run_id, outcome, lines = f"rl-{uuid.uuid4().hex[:8]}", {}, {0: [], 1: []}

    def node(rank):
        home = DataHome(tmp_path / f"node{rank}").ensure()
        ensure_tiny_model(home, seed=rank)  # node 1: other random weights, same folder name
        try:
            nodes = rendezvous.meet(run_store, run_id, 2, rank, timeout=60)
            spec = rl_launch.prepare_run(home, cfg, PROMPTS, store=run_store.uri)
            rl_launch.train(home, spec, on_line=lines[rank].append, nodes=nodes)
            outcome[rank] = spec
        except Exception as exc:  # noqa: BLE001 - checked below
            outcome[rank] = exc

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(outcome[r], RuntimeError) for r in (0, 1)), outcome
    for r in (0, 1):
        assert any("rank 1 disagrees with rank 0 on the start weights" in line for line in lines[r]), lines[r][-20:]
        assert not any("METRICS" in line for line in lines[r])
    assert remote.remote_steps(run_store, rl_launch.prepare_run(DataHome(tmp_path / "node0"), cfg, PROMPTS).key, 2) == []


def test_a_rank_with_nothing_to_learn_pads_and_the_update_still_matches(home, monkeypatch):
    monkeypatch.setenv("THYME_HOOKS", "tests.integration.test_train_rl:PickyHooks")
    prompts = [RLPrompt("q0", image_bytes(), QUESTION, "A"), RLPrompt("q1", image_bytes(), QUESTION + "\n(second)", "A")]
    out = {}
    for nproc in (0, 2):
        # also: a frozen vision tower (parameters ZeRO-3 partitions but never reduces) and, on the ranks,
        # gradient checkpointing under the chunked, checkpointed log-probs
        cfg = load_preset("rl_tiny", max_steps=1, nproc=nproc, deepspeed="zero3", freeze_vision=True,
                          gradient_checkpointing=True, **SETTINGS)
        spec = rl_launch.prepare_run(home, cfg, prompts)
        metrics, lines = [], []
        rl_launch.train(home, spec, on_metrics=metrics.append, on_line=lines.append)
        out[nproc] = metrics[-1]
    a, b = out[0], out[2]
    assert a["groups_dropped"] == b["groups_dropped"] == 1 and a["kept"] == b["kept"] == 2
    for k in ("loss", "pg_loss", "grad_norm", "tokens"):
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    assert b["updated"] == 1 and b["sequences"] == 2


def test_thyme_train_rl_through_a_prefect_server_then_skipped(thyme_env, tmp_path):
    """The CLI and the flow as a user runs them: rl_tiny (one torchrun rank, ZeRO-3) on prompts derived from
    prepared SFT data, against a real Prefect server; the same command again is skipped."""
    from tests.integration.conftest import thyme
    from thyme_core import prepare
    from thyme_core.synth import write_dataset

    home = DataHome(tmp_path / "home").ensure()
    src = home.root / "2round.parquet"
    write_dataset(src, "2round", 4, seed=3, width=320, height=240, workers=1)
    for shard in prepare.plan(str(src), "2round", prepare.PrepareConfig()):
        prepare.prepare_shard(shard, home, prepare.PrepareConfig())
    first = thyme("train-rl", "--max-steps", "1", "--home", home.root, env=thyme_env)
    assert "1 steps" in first.stdout and "(skipped)" not in first.stdout, first.stdout
    again = thyme("train-rl", "--max-steps", "1", "--home", home.root, env=thyme_env)
    assert "(skipped)" in again.stdout, again.stdout
    _, rows = catalog.query(home, "SELECT count(*), count(DISTINCT prompt_id) FROM rl_rollouts")
    assert rows == [(4, 2)]  # rl_tiny: 2 prompts per step x 2 members, once
    _, rows = catalog.query(home, "SELECT count(*) FROM trajectories WHERE run_id LIKE 'rl-%'")
    assert rows == [(4,)]
