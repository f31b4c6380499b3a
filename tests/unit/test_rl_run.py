"""An RL run on the tiny Qwen2.5-VL (CPU) with the real sandbox: steps, the catalog, resume, skip.

The random tiny model steered through scripts as in test_rl_step.py (member 0 answers right, member 1 wrong,
both crop in the sandbox). Checked: every rollout is queryable in rl_rollouts with its trajectory and
execution rows and the named RL queries read them; a run killed after step 2's record (before its checkpoint) resumes
from step 1's checkpoint and redoes step 2, then step 3; a rerun with nothing changed is skipped; the prompt fallback from sft_samples.
"""

import json
import re

import pytest

from tests.fakes import RL_QUESTION as QUESTION, red_png as image_bytes, steer
from thyme_core import catalog
from thyme_core.rl import launch as rl_launch
from thyme_core.rl import run as rl_run
from thyme_core.rl.config import RlConfig, load_preset
from thyme_core.rl.data import clean_question, load_prompts
from thyme_core.rl.judge import StaticJudge
from thyme_core.rl.rollout import RLPrompt

PROMPTS = [RLPrompt(f"p{i}", image_bytes(), QUESTION, "A") for i in range(2)]



def rows_of(home, sql):
    return catalog.query(home, sql)[1]


class Killed(Exception):
    pass


def config(**kw) -> RlConfig:
    return load_preset("rl_tiny", nproc=0, group_size=2, prompts_per_step=1, max_new_tokens=400, max_length=1200,
                       max_steps=3, save_steps=1, **kw)


def test_run_lands_in_the_catalog_resumes_and_skips(home):
    cfg = config()
    spec = rl_launch.prepare_run(home, cfg, PROMPTS)
    seen = []

    def kill_after_two(m):
        seen.append(m["step"])
        if m["step"] == 2:
            raise Killed

    with pytest.raises(Killed):
        rl_launch.train(home, spec, StaticJudge(1.0), steer, kill_after_two)
    # the record of a step is written before its checkpoint: killed there, step 2 has no checkpoint yet
    assert rl_run.latest_checkpoint(spec.run_dir).name == "step-000001.pt"
    assert not (spec.run_dir / "DONE").exists()

    resumed = rl_launch.train(home, rl_launch.prepare_run(home, cfg, PROMPTS), StaticJudge(1.0), steer, lambda m: seen.append(m["step"]))
    assert seen == [1, 2, 2, 3] and resumed["resumed_from"] == 1 and resumed["steps"] == 3
    assert [m["step"] for m in rl_run.read_metrics(spec.run_dir)] == [1, 2, 3]
    assert (spec.run_dir / "final" / "config.json").exists()
    assert json.loads((spec.run_dir / "DONE").read_text()) == {"steps": 3}

    # every rollout is in the catalog: rewards, advantages, groups, and its executions
    _, rows = catalog.query(home, 'SELECT step, prompt_id, member, reward, advantage > 0, kept, "limit" '
                                  "FROM rl_rollouts ORDER BY step, member")
    assert rows == [(1, "p0", 0, 2.0, True, True, ""), (1, "p0", 1, 0.5, False, True, ""),
                    (2, "p1", 0, 2.0, True, True, ""), (2, "p1", 1, 0.5, False, True, ""),
                    (3, "p0", 0, 2.0, True, True, ""), (3, "p0", 1, 0.5, False, True, "")]
    _, rows = catalog.query(home, "SELECT DISTINCT member, reward_format, reward_accuracy, reward_consistency "
                                  "FROM rl_rollouts ORDER BY member")
    assert rows == [(0, 1.0, 1.0, 1.0), (1, 1.0, 0.0, None)]  # consistency is asked only of a right answer
    _, rows = catalog.query(home, "SELECT count(*), count(DISTINCT t.sample_id), min(e.status), max(e.status) "
                                  "FROM rl_rollouts r JOIN trajectories t ON t.run_id = r.run AND "
                                  "t.sample_id = r.sample_id JOIN executions e ON e.run_id = r.run AND "
                                  "e.sample_id = r.sample_id")
    assert rows == [(6, 6, "ok", "ok")]
    _, rows = catalog.named(home, "rl_reward_by_step")
    assert [(r[1], r[2], r[3]) for r in rows] == [(1, 2, 1.25), (2, 2, 1.25), (3, 2, 1.25)]
    cols, rows = catalog.named(home, "rl_code_use_by_step")
    assert [dict(zip(cols, r))["code_rate"] for r in rows] == [1.0] * 3
    assert [dict(zip(cols, r))["code_success_rate"] for r in rows] == [1.0] * 3
    assert catalog.named(home, "rl_errors_by_step")[1] == []
    cols, rows = catalog.named(home, "rl_zero_variance_by_step")
    assert [dict(zip(cols, r))["zero_variance_groups"] for r in rows] == [0] * 3

    # the step records as TensorBoard scalars, read back by TensorBoard itself (step 2, redone, is there twice)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(spec.run_dir))
    events.Reload()
    by_step = {e.step: e.value for e in events.Scalars("rl/reward_mean")}
    assert by_step == pytest.approx({m["step"]: m["reward_mean"] for m in rl_run.read_metrics(spec.run_dir)})
    assert {"rl/kl_mean", "rl/grad_norm", "rl/rollouts_per_s", "rl/engine_wait_share"} <= set(events.Tags()["scalars"])

    # the viewer's RL pages over this run: curves, the step's group side by side, a rollout with its fed-back image
    # (a crop of a flat red image: no region is claimed, since a flat patch matches anywhere)
    from thyme_core.viewer.db import Catalog
    from thyme_core.viewer.links import LiveLinks
    from thyme_core.viewer.pages import Pages

    pages = Pages(Catalog(home), LiveLinks())
    assert pages.rl_run(spec.key).count("<polyline") >= 6
    step = pages.rl_step(spec.key, 2)
    assert step.count('class="rollout kept"') == 2 and ">2.0<" in step and ">0.5<" in step
    # the reward's parts, side by side: right (format, accuracy, consistency) and wrong (format only, no
    # consistency asked)
    cells = re.findall(r'class="reward-(\w+)">([^<]*)<', step)
    assert cells == [("format", "1.0"), ("accuracy", "1.0"), ("consistency", "1.0"),
                     ("format", "1.0"), ("accuracy", "0.0"), ("consistency", "–")]
    sid = rows_of(home, "SELECT sample_id FROM rl_rollouts WHERE step = 2 AND member = 0")[0][0]
    rollout = pages.trajectory(f"rl-{spec.key}", sid)
    assert 'class="fed-back"' in rollout and "not a crop or zoom of the input" in rollout and ">2.0<" in rollout
    assert "format 1.0 · accuracy 1.0 · consistency 1.0" in rollout

    # nothing changed: skipped; more steps: the same run goes on from its last checkpoint
    again = rl_launch.prepare_run(home, cfg, PROMPTS)
    assert again.done and again.key == spec.key
    assert rl_launch.train(home, again, StaticJudge(1.0), steer)["skipped"]
    assert rl_launch.prepare_run(home, cfg.replace(max_steps=4), PROMPTS).key == spec.key
    assert rl_launch.prepare_run(home, cfg.replace(beta=0.02), PROMPTS).key != spec.key


def test_prompts_from_rl_samples_else_derived_from_sft_samples(home, tmp_path):
    from thyme_core import prepare
    from thyme_core.synth import generate_records
    from thyme_core.synth.rl import write_rl_dataset
    from thyme_core.synth.writer import write_parquet

    def run(source, split):
        config = prepare.PrepareConfig(shard_rows=4)
        for spec in prepare.plan(source, split, config):
            prepare.prepare_shard(spec, home, config)

    write_parquet(tmp_path / "sft.parquet", list(generate_records("wo_thinking_thyme_single_round", 4, 0, 320, 240, 1)))
    run(tmp_path / "sft.parquet", "sft")
    derived = load_prompts(home, "sft", 0)  # no RL data yet: the fallback
    assert derived and all(p.image.is_file() and "User Image" not in p.question and "Output Format" not in p.question
                           and p.solution for p in derived)
    assert [p.prompt_id for p in derived] == sorted(p.prompt_id for p in derived)
    write_rl_dataset(tmp_path / "rl.jsonl", 3, seed=1, width=320, height=240)
    run(tmp_path / "rl.jsonl", "rl")
    prompts = load_prompts(home, "", 2)  # RL data present: rl_samples, first by id
    _, rows = catalog.query(home, "SELECT id, solution FROM rl_samples ORDER BY id LIMIT 2")
    assert [(p.prompt_id, p.solution) for p in prompts] == rows


def test_clean_question_drops_image_lines_and_the_format_footer():
    q = ('<image>\nWhat colour is the sign?\nOptions:\nA. red\nB. blue\n### User Image Path:** "images/a.jpg"\n'
         '### User Image Size:** 300x200\n\n### **Output Format (strict adherence required):**\n\n<think>x</think>')
    # the image lines and the output-format footer go: the agent adds the real path and its own prompt
    assert clean_question(q) == "What colour is the sign?\nOptions:\nA. red\nB. blue"
    assert clean_question("How many?") == "How many?"  # nothing to strip


def test_presets_load_and_bad_values_fail():
    ref = load_preset("rl")
    assert (ref.learning_rate, ref.group_size, ref.beta, ref.max_new_tokens, ref.max_pixels) == \
        (5e-7, 4, 0.01, 3196, 2408448)
    from thyme_core.base.errors import ThymeError

    with pytest.raises(ThymeError):
        load_preset("rl_tiny", no_such_field=1)
    with pytest.raises(ThymeError):
        RlConfig(prompts_per_step=0)
    assert (ref.nproc, ref.deepspeed, ref.rollout_engine) == (8, "zero3", "vllm")
    with pytest.raises(ThymeError, match="vllm rollout engine needs"):
        RlConfig(rollout_engine="vllm", nproc=0)
    with pytest.raises(ThymeError, match="must be >= nproc"):
        RlConfig(prompts_per_step=2, nproc=4)


def test_each_rank_rolls_out_a_contiguous_share_of_whole_prompts():
    from thyme_core.base.errors import ThymeError

    prompts = [RLPrompt(f"p{i}", b"", "q", "A") for i in range(5)]
    shares = [rl_run.rank_share(prompts, r, 2) for r in range(2)]
    assert [[p.prompt_id for p in s] for s in shares] == [["p0", "p1", "p2"], ["p3", "p4"]]
    assert rl_run.rank_share(prompts, 0, 1) == prompts
    with pytest.raises(ThymeError, match="every rank needs at least one"):
        rl_run.rank_share(prompts[:1], 1, 2)


def test_a_run_is_keyed_by_the_prompts_content_not_only_their_ids(home):
    import dataclasses

    cfg = config()
    same = rl_launch.prepare_run(home, cfg, PROMPTS)
    assert rl_launch.prepare_run(home, cfg, list(reversed(PROMPTS))).key == same.key  # order does not matter
    edited = [dataclasses.replace(PROMPTS[0], question=QUESTION + "\nC. green"), PROMPTS[1]]
    assert rl_launch.prepare_run(home, cfg, edited).key != same.key
    assert rl_launch.prepare_run(home, cfg, [dataclasses.replace(PROMPTS[0], solution="B"), PROMPTS[1]]).key != same.key
