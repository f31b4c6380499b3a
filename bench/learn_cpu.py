"""Does the whole stack make a model better? SFT teaches the tool format, RL raises the reward (issue 17).

On the zoom task (thyme_core/synth/zoom.py: a small coloured square in a 448x448 picture; the fixed program
that finds it, crops and zooms is the response's code), with the "learn" variant of the offline Qwen2.5-VL
(model/tiny.py), every stage through the real command, as a user runs it:

    thyme synth (SFT data, RL prompts, a held-out TSV of other pictures)   thyme prepare (SFT, RL)
    thyme eval (before SFT)   thyme train-sft --preset sft_learn   thyme eval (after SFT)
    thyme train-rl --preset rl_learn (torchrun, DeepSpeed ZeRO-3, real sandbox, the format reward sampled at
        text temperature 1.5: see the preset's header for why not the combined one yet)
    thyme eval (after RL)
    thyme train-rl ... --set rewards=[format_negated]: the control, advantages sign-flipped; must go down
    thyme eval (after the control)

Held-out figures per stage (eval/behaviour.py): well-formed share, code use, sandbox success, accuracy, greedy
(`held_out`) and sampled as the RL rollouts are, text at temperature 1.5, seeded (`held_out_sampled`). RL
curves per step, from each run's metrics.jsonl and its rollouts in the catalog: the trained reward (the
control's negated back, so both curves are the format reward), well-formed share, rule-based accuracy, code use,
code success, zero-variance groups, rollouts that hit a limit, KL to the reference. Both runs share the seeds:
step s rolls out the same prompts from the same sampling seed, so their difference at a step is the signal
(their step 1 is identical). The last line printed is one JSON object.

    .venv/bin/python bench/learn_cpu.py --out /tmp/learn            # the full run (docs/benchmarks.md)
    .venv/bin/python bench/learn_cpu.py --out /tmp/learn --quick    # what tests/integration/test_learn.py runs

Without PREFECT_API_URL it starts its own `prefect server` on 127.0.0.1 (and stops it at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Sizes:
    sft_samples: int
    rl_prompts: int
    eval_samples: int
    sft_steps: int
    rl_steps: int
    prompts_per_step: int
    group_size: int


FULL = Sizes(sft_samples=256, rl_prompts=32, eval_samples=32, sft_steps=240, rl_steps=10, prompts_per_step=4,
             group_size=8)
# The short version trains the same SFT model on the same data (what teaches the format is the 240 steps), and
# its RL steps are the full run's first 8 (same seeds; the control's format fell at steps 7-8): only the
# held-out set and the RL runs are shorter.
QUICK = Sizes(sft_samples=256, rl_prompts=32, eval_samples=16, sft_steps=240, rl_steps=8, prompts_per_step=4,
              group_size=8)
EVAL_ARGS = ["--max-new-tokens", "192", "--max-length", "1024", "--max-rounds", "2"]
# The held-out set is also answered as the RL rollouts sample (text at temperature 1.5, seeded; code greedy):
# greedy decoding after SFT is already well-formed on every picture, so only sampled answers have room to
# show RL raising the format (and the control lowering it) on pictures RL never saw.
SAMPLED_ARGS = ["--text-temperature", "1.5", "--seed", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect(folder: Path) -> tuple[subprocess.Popen, str]:
    """A `prefect server` on 127.0.0.1 with its own PREFECT_HOME (the ephemeral one times out on busy CPUs)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(folder), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=open(folder / "server.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"prefect server did not start: {(folder / 'server.log').read_text()[-2000:]}")


class Runner:
    """Runs `thyme` subcommands with one environment, logging each command's output to the work folder."""

    def __init__(self, work: Path, env: dict):
        self.work, self.env, self.n = work, env, 0
        self.timings: dict[str, float] = {}

    def thyme(self, name: str, *args) -> str:
        self.n += 1
        log = self.work / "logs" / f"{self.n:02d}-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        out = subprocess.run([str(BIN / "thyme"), *map(str, args)], env=self.env, cwd=REPO, capture_output=True,
                             text=True)
        self.timings[name] = round(time.perf_counter() - start, 1)
        log.write_text(f"$ thyme {' '.join(map(str, args))}\n{out.stdout}\n{out.stderr}")
        print(f"[{self.timings[name]:7.1f} s] thyme {name}", file=sys.stderr, flush=True)
        if out.returncode != 0:
            raise RuntimeError(f"thyme {name} failed ({out.returncode}); see {log}:\n{out.stderr[-3000:]}")
        return out.stdout


def final_path(stdout: str) -> Path:
    return Path(re.findall(r"final weights: (\S+)", stdout)[-1])


def rl_curves(home: Path, run_dir: Path, negated: bool) -> dict:
    """Per RL step, over its rollouts: the run's reward (the control's negated back), the well-formed share,
    accuracy (the rule-based one, whatever the run trained on), code use, code success, and the groups with
    no spread (advantage 0)."""
    import pyarrow.parquet as pq

    from thyme_core.rl.rewards import accuracy_reward, format_ok
    from thyme_core.rl.run import read_metrics

    sign = -1.0 if negated else 1.0
    rows = [m for m in read_metrics(run_dir) if "reward_mean" in m]
    curves = {"reward": [round(sign * m["reward_mean"], 4) + 0.0 for m in rows], "well_formed": [], "accuracy": [],
              "code_use": [round(m["code_rate"], 4) for m in rows],
              "code_ok": [round(m["code_ok_rate"], 4) for m in rows],
              "zero_variance_groups": [int(m["zero_variance_groups"]) for m in rows],
              "limited": [int(m["limited"]) for m in rows], "kl": [round(m["kl_mean"], 4) for m in rows]}
    prompts = {p["id"]: p for p in map(json.loads, (run_dir / "prompts.jsonl").read_text().splitlines())}
    key = run_dir.name
    for m in rows:
        step = int(m["step"])
        ids = {r["sample_id"]: r["prompt_id"] for r in pq.read_table(
            home / "shards" / "rl" / key / f"step-{step:05d}" / "rl_rollouts.parquet").to_pylist()}
        texts = pq.read_table(home / "shards" / "agent" / f"rl-{key}-step-{step:05d}" / "trajectories.parquet",
                              columns=["sample_id", "response"]).to_pylist()
        asked = [prompts[ids[t["sample_id"]]] for t in texts]
        responses = [t["response"] for t in texts]
        acc = accuracy_reward(responses, [p["solution"] for p in asked], question=[p["question"] for p in asked])
        curves["well_formed"].append(round(sum(map(format_ok, responses)) / len(texts), 4))
        curves["accuracy"].append(round(sum(acc) / len(texts), 4))
    return curves


def run(work: Path, sizes: Sizes, seed: int, control_eval: bool) -> dict:
    from thyme_core.base.home import DataHome
    from thyme_core.eval.behaviour import run_behaviour

    home, src = work / "home", work / "src"
    src.mkdir(parents=True, exist_ok=True)
    # One torch thread per process: on a busy CPU, a tiny model's per-token ops with 2 threads wait on each other
    # (measured: 1.5 s per generated token with 2 threads against 0.07 s with 1, on 2 oversubscribed cores).
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_SERVER_ANALYTICS_ENABLED="false", OMP_NUM_THREADS="1",
               DS_ACCELERATOR="cpu")
    r = Runner(work, env)
    h = ["--home", home]
    for name, form, n, seed_of in (("sft.parquet", "sft", sizes.sft_samples, seed),
                                   ("rl.parquet", "rl", sizes.rl_prompts, seed + 1),
                                   ("zoom_heldout.tsv", "bench", sizes.eval_samples, seed + 2)):
        if not (src / name).exists():  # a rerun in the same folder resumes: every later stage skips what is done
            r.thyme(f"synth-{form}", "synth", src / name, "--split", "zoom", "--form", form, "--n", n,
                    "--seed", seed_of)
    r.thyme("prepare-sft", "prepare", src / "sft.parquet", "--split", "zoom", *h)
    r.thyme("prepare-rl", "prepare", src / "rl.parquet", "--split", "zoom", *h)
    tsv = src / "zoom_heldout.tsv"

    def evaluate(name: str, model, *extra) -> dict:
        r.thyme(f"eval-{name}", "eval", tsv, "--model", model, "--run-id", name, *EVAL_ARGS, *extra, *h)
        return run_behaviour(DataHome(home), name)

    held_out = {"before_sft": evaluate("before_sft", "tiny:learn")}
    sampled = {}
    sft = final_path(r.thyme("train-sft", "train-sft", "--stage", "1", "--model", "tiny:learn", "--preset",
                             "sft_learn", "--max-steps", sizes.sft_steps, "--set", f"seed={seed}",
                             "--set", f"epochs={1 + sizes.sft_steps * 8 // sizes.sft_samples}", *h))
    held_out["after_sft"] = evaluate("after_sft", sft)
    sampled["after_sft"] = evaluate("after_sft_sampled", sft, *SAMPLED_ARGS)
    rl_args = ["--model", sft, "--preset", "rl_learn", "--data", "zoom", "--max-steps", sizes.rl_steps,
               "--set", f"prompts_per_step={sizes.prompts_per_step}", "--set", f"group_size={sizes.group_size}",
               "--set", f"seed={seed}", *h]
    rl = final_path(r.thyme("train-rl", "train-rl", *rl_args))
    held_out["after_rl"] = evaluate("after_rl", rl)
    sampled["after_rl"] = evaluate("after_rl_sampled", rl, *SAMPLED_ARGS)
    control = final_path(r.thyme("train-rl-control", "train-rl", *rl_args, "--set", "rewards=[format_negated]"))
    if control_eval:
        held_out["after_control_rl"] = evaluate("after_control_rl", control)
        sampled["after_control_rl"] = evaluate("after_control_rl_sampled", control, *SAMPLED_ARGS)
    return {"bench": "learn_cpu", "sizes": asdict(sizes), "seed": seed, "held_out": held_out,
            "held_out_sampled": sampled,
            "rl": rl_curves(home, rl.parent, False), "rl_control": rl_curves(home, control.parent, True),
            "seconds": r.timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="work folder (data home, sources, logs); reuse it to resume")
    ap.add_argument("--quick", action="store_true", help="the integration test's sizes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-control-eval", action="store_true", help="skip the held-out eval of the control")
    args = ap.parse_args()
    work = Path(args.out).resolve()
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server, url = start_prefect(work / "prefect")
        os.environ["PREFECT_API_URL"] = url
    try:
        result = run(work, QUICK if args.quick else FULL, args.seed, not args.no_control_eval)
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
