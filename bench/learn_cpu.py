"""Does the whole stack make a model better? SFT teaches the tool format, RL raises the reward (issue 17).

On the zoom task (thyme_core/synth/zoom.py: a small coloured square in a 448x448 picture; the fixed program
that finds it, crops and zooms is the response's code), with the "learn" variant of the offline Qwen2.5-VL
(model/tiny.py), every stage through the real command, as a user runs it:

    thyme synth (SFT data, RL prompts, a held-out TSV of other pictures)   thyme prepare (SFT, RL)
    thyme eval (before SFT)   thyme train-sft --preset sft_learn --max-steps 96   thyme eval (after SFT)
    side by side, from the SFT model, with the same seeds:
      thyme train-rl --preset rl_learn (torchrun, DeepSpeed ZeRO-3, real sandbox, the format reward sampled at
          text temperature 1.0)
      thyme train-rl ... --set rewards=[format_negated]: the control, advantages sign-flipped; must go down
      thyme train-rl ... --set learning_rate=1e-12: no learning, each step's luck (its prompts and samples)
    thyme eval (after RL; after the control)

SFT stops at 96 steps on purpose (the format half learned) so RL has room to raise it. Held-out figures per
stage (eval/behaviour.py): well-formed share, code use, sandbox success, accuracy, greedy (`held_out`) and
sampled as the RL rollouts are, text at temperature 1.0, seeded (`held_out_sampled`). RL curves per step, from
each run's metrics.jsonl and its rollouts in the catalog: the trained reward (the control's negated back, so
every curve is the format reward), well-formed share, rule-based accuracy, code use, code success,
zero-variance groups, rollouts that hit a limit, KL to the reference. The runs share the seeds: step s rolls
out the same prompts from the same sampling seed, so their difference at a step is the signal (their step 1
is identical). The last line printed is one JSON object.

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
    rl_nproc: int  # 1: torchrun + DeepSpeed ZeRO-3 (the user's path); 0: in-process, plain AdamW (same maths)
    rl_evals: bool  # also answer the held-out set sampled as the rollouts are, and after RL (else RL is
    # measured by its own rollouts only)
    luck: bool  # a third RL run at lr 1e-12: the same seeded rollouts with no learning (each step's luck)


# SFT stops at 96 steps on purpose: the format is half learned (held-out greedy well-formed ~0.5, code use ~1),
# so RL has room to raise it. At 240 steps SFT writes it on every picture greedy and on 3 in 4 sampled, and RL
# could only hold it (docs/benchmarks.md, "It learns?", first and second sessions).
FULL = Sizes(sft_samples=256, rl_prompts=32, eval_samples=32, sft_steps=96, rl_steps=8, prompts_per_step=4,
             group_size=8, rl_nproc=1, rl_evals=True, luck=True)
# The short version (tests/integration/test_learn.py, the integration tier: ~3.5 min): the same SFT recipe and
# steps on fewer pictures, 8 held-out pictures before and after SFT, RL and its control side by side,
# in-process, 4 steps of 2 prompts x 8, measured by their rollouts.
QUICK = Sizes(sft_samples=128, rl_prompts=16, eval_samples=8, sft_steps=96, rl_steps=4, prompts_per_step=2,
              group_size=8, rl_nproc=0, rl_evals=False, luck=False)
EVAL_ARGS = ["--max-new-tokens", "192", "--max-length", "1024", "--max-rounds", "2"]
# The held-out set is also answered as the RL rollouts sample (text at the rl_learn preset's temperature 1.0,
# seeded; code greedy): what RL trains is the sampled policy.
SAMPLED_ARGS = ["--text-temperature", "1.0", "--seed", "0"]


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
        return self.together((name, args))[0]

    def together(self, *commands: tuple[str, tuple]) -> list[str]:
        """Run `thyme` commands side by side (one torch thread each); their stdouts, in order. Each writes
        straight to files (a pipe left unread while another command is waited for would stall it)."""
        runs = []
        for name, args in commands:
            self.n += 1
            log = self.work / "logs" / f"{self.n:02d}-{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            out, err = log.with_suffix(".stdout"), log.with_suffix(".stderr")
            with open(out, "w") as o, open(err, "w") as e:
                proc = subprocess.Popen([str(BIN / "thyme"), *map(str, args)], env=self.env, cwd=REPO, text=True,
                                        stdout=o, stderr=e)
            runs.append((name, args, log, out, err, proc, time.perf_counter()))
        ended: dict[int, float] = {}
        while len(ended) < len(runs):
            for i, run in enumerate(runs):
                if i not in ended and run[5].poll() is not None:
                    ended[i] = time.perf_counter()
            time.sleep(0.2)
        outs, failed = [], []
        for i, (name, args, log, out, err, proc, start) in enumerate(runs):
            self.timings[name] = round(ended[i] - start, 1)
            stdout, stderr = out.read_text(), err.read_text()
            log.write_text(f"$ thyme {' '.join(map(str, args))}\n{stdout}\n{stderr}")
            out.unlink()
            err.unlink()
            print(f"[{self.timings[name]:7.1f} s] thyme {name}", file=sys.stderr, flush=True)
            if proc.returncode != 0:
                failed.append(f"thyme {name} failed ({proc.returncode}); see {log}:\n{stderr[-3000:]}")
            outs.append(stdout)
        if failed:
            raise RuntimeError("\n".join(failed))
        return outs


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
    if sizes.rl_evals:
        sampled["after_sft"] = evaluate("after_sft_sampled", sft, *SAMPLED_ARGS)
    rl_args = ("train-rl", "--model", sft, "--preset", "rl_learn", "--data", "zoom", "--max-steps", sizes.rl_steps,
               "--nproc", sizes.rl_nproc, "--set", f"prompts_per_step={sizes.prompts_per_step}",
               "--set", f"group_size={sizes.group_size}", "--set", f"seed={seed}", *h)
    # Side by side, from the same SFT model and seeds: RL, its control (minus the reward: every advantage's sign
    # flipped), and (full run) no learning at all, which gives each step's luck (its prompts and samples).
    runs = {"rl": rl_args, "rl_control": (*rl_args, "--set", "rewards=[format_negated]")}
    if sizes.luck:
        runs["rl_no_learning"] = (*rl_args, "--set", "learning_rate=1e-12")
    finals = dict(zip(runs, map(final_path, r.together(*runs.items()))))
    if sizes.rl_evals:
        held_out["after_rl"] = evaluate("after_rl", finals["rl"])
        sampled["after_rl"] = evaluate("after_rl_sampled", finals["rl"], *SAMPLED_ARGS)
        if control_eval:
            held_out["after_control_rl"] = evaluate("after_control_rl", finals["rl_control"])
            sampled["after_control_rl"] = evaluate("after_control_rl_sampled", finals["rl_control"], *SAMPLED_ARGS)
    curves = {name: rl_curves(home, final.parent, name == "rl_control") for name, final in finals.items()}
    return {"bench": "learn_cpu", "sizes": asdict(sizes), "seed": seed, "held_out": held_out,
            "held_out_sampled": sampled, **curves, "seconds": r.timings}


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
