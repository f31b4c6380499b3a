"""SFT end to end on CPU: two-process torchrun with DeepSpeed ZeRO-2 (gloo) on the tiny Qwen2.5-VL.

- a repeated batch: the loss goes down;
- a run killed right after step 3 resumes from its step-2 checkpoint with the same data order, and its
  losses for steps 3..6 match the uninterrupted run's;
- `thyme train-sft` through a real Prefect server: stage 1 with nothing changed is skipped; stage 2 starts
  from stage 1's final weights and no micro-batch mixes image and text-only samples.
The first DeepSpeed op build (~35-60 s) is cached in TORCH_EXTENSIONS_DIR (.cache/torch_extensions).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from thyme_core import prepare
from thyme_core.base.home import DataHome
from thyme_core.synth import write_dataset
from thyme_core.runs import checkpoint
from thyme_core.sft import launch
from thyme_core.sft.config import load_preset

# Stage 1 on the 4 samples of the 2round split: global batch 4 = 2 ranks x micro 1 x accumulation 2,
# so every epoch is the same batch; 6 epochs = 6 steps on it.
STAGE1 = {"splits": ["2round"], "epochs": 6, "nproc": 2, "micro_batch": 1, "global_batch": 4,
          "save_steps": 2, "learning_rate": 1e-3, "max_pixels": 16 * 28 * 28}
CLI_SETS = [f"--set={k}={json.dumps(v)}" for k, v in STAGE1.items() if k != "nproc"] + ["--nproc=2"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = DataHome(tmp_path_factory.mktemp("sft_home")).ensure()
    for split, n in (("2round", 4), ("computation", 10)):
        src = home.root / f"{split}.parquet"
        write_dataset(src, split, n, seed=5, width=320, height=240, workers=1)
        for spec in prepare.plan(str(src), split, prepare.PrepareConfig()):
            prepare.prepare_shard(spec, home, prepare.PrepareConfig())
    return home


def _run(spec):
    lines = []
    rc = launch.launch(spec, on_line=lines.append, on_metrics=lambda m: lines.append(json.dumps(m)))
    return rc, lines


@pytest.fixture(scope="module")
def reference(home):
    """The uninterrupted run's per-step metrics (its folder is then removed for the killed run)."""
    spec = launch.prepare_run(home, load_preset("sft_tiny_stage1", **STAGE1))
    rc, lines = _run(spec)
    assert rc == 0, "\n".join(lines[-40:])
    metrics = launch.read_metrics(spec.run_dir)
    shutil.rmtree(spec.run_dir)
    return metrics


def test_repeated_batch_loss_goes_down_on_two_ranks(reference):
    losses = [m["loss"] for m in reference]
    assert len(losses) == 6
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 0.1
    assert all(m["micro_batches"] == {"image": 4, "text": 0, "mixed": 0} for m in reference)
    assert all(0.0 <= m["padding"] < 0.5 and m["tokens_per_s"] > 0 for m in reference)


class KillAfterStep3:
    """Each rank SIGKILLs itself right after step 3 (a preemption between checkpoints)."""

    @staticmethod
    def after_step(step):
        import os
        import signal

        if step == 3:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def resumed(home, reference, tmp_path_factory):
    """Kill the same run right after step 3, then relaunch it: (spec, metrics, first run's exit code)."""
    import os

    spec = launch.prepare_run(home, load_preset("sft_tiny_stage1", **STAGE1))
    assert not spec.done
    os.environ["THYME_HOOKS"] = "tests.integration.test_train_sft:KillAfterStep3"
    try:
        killed_rc, _ = _run(spec)
    finally:
        del os.environ["THYME_HOOKS"]
    assert checkpoint.latest_step(spec.run_dir) == 2  # step 3 was never saved
    rc, lines = _run(spec)
    assert rc == 0, "\n".join(lines[-40:])
    launch.finish(home, spec)
    return spec, launch.read_metrics(spec.run_dir), killed_rc, lines


def test_killed_run_resumes_with_the_same_losses(reference, resumed):
    spec, metrics, killed_rc, lines = resumed
    assert killed_rc != 0
    assert any('"event": "resumed", "step": 2' in line for line in lines)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for ref, got in zip(reference[2:], metrics[2:]):  # steps 3..6 come from the resumed process
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-4, abs=1e-5), (ref, got)
        assert got["lr"] == pytest.approx(ref["lr"])
        assert got["tokens"] == ref["tokens"]  # the same data order
    assert (checkpoint.final_dir(spec.run_dir) / "config.json").exists()
    # the step records as TensorBoard scalars (read back by TensorBoard), the grad norm among them
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(spec.run_dir))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("sft_stage1/loss")} == pytest.approx(
        {m["step"]: m["loss"] for m in metrics}, rel=1e-5)  # float32 in the event file
    assert all(m["grad_norm"] > 0 for m in metrics) and "sft_stage1/grad_norm" in events.Tags()["scalars"]


def test_cli_skips_finished_stage1_then_stage2_never_mixes(home, resumed, thyme_env):
    spec = resumed[0]
    base = [sys.executable, "-m", "thyme_cli.main", "train-sft", "--home", str(home.root)]
    one = subprocess.run(base + ["--stage", "1", *CLI_SETS], env=thyme_env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert f"run {spec.key} already finished" in one.stdout + one.stderr
    two = subprocess.run(base + ["--stage", "2", "--max-steps", "4", "--nproc", "2", "--set", "global_batch=2",
                                 "--set", "micro_batch=1", "--set", "max_pixels=12544"],
                         env=thyme_env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    stage2 = launch.stage_dir(home, 2) / (launch.stage_dir(home, 2) / "LATEST").read_text().strip()
    config = json.loads((stage2 / "config.json").read_text())
    assert config["model"] == str(checkpoint.final_dir(spec.run_dir))  # stage 1's weights
    metrics = launch.read_metrics(stage2)
    assert len(metrics) == 4 and {m["kind"] for m in metrics} <= {"image", "text"}
    assert all(m["micro_batches"]["mixed"] == 0 for m in metrics)
    assert all(m["micro_batches"][m["kind"]] == 2 for m in metrics)  # both micro-batches of the step's kind
