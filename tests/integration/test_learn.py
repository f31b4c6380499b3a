"""It learns: the short version of bench/learn_cpu.py (issue 17), every stage through the real `thyme` commands.

On the zoom task with the learn-sized offline Qwen2.5-VL, seeded: `thyme synth`, `thyme prepare`, `thyme eval`
before SFT, `thyme train-sft`, `thyme eval`, `thyme train-rl` (torchrun, DeepSpeed ZeRO-3, the real sandbox, the
format reward sampled at text temperature 1.5), `thyme eval`, and the control RL run on the negated reward.
Checked, with margins wide enough for the seeded run not to flake (the full run's figures: docs/benchmarks.md):
- SFT teaches the tool format: well-formed responses and code use go from none to most, and the code it
  writes runs in the sandbox;
- RL and its sign-flipped control start from the same model with the same seeded rollouts (their first steps
  agree exactly); the control's format reward goes down (the measurement can fail: with the advantages' sign
  flipped the update must break what the reward asks for), and RL's ends well above the control's, while
  greedy decoding after RL keeps the format.
Not checked, because the full run did not show it (docs/benchmarks.md): RL raising the format reward above its
start (it held it: 0.66-0.81 a step against 0.63-0.78 for the same steps without learning), and accuracy going
up (SFT does not teach the colour at this scale: held-out accuracy at chance, 0.22).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Opt-in: the short version is still a 240-step SFT plus two 8-step RL runs of 32 rollouts a step, 30-50
# minutes on a shared 2-core machine (docs/benchmarks.md), far over the integration tier's budget.
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.environ.get("THYME_LEARN_TEST") != "1",
                                 reason="the learning run takes 30-50 min on 2 cores (issue 17); THYME_LEARN_TEST=1")]


def test_sft_teaches_the_tool_format_and_the_sign_flipped_rl_control_breaks_it(thyme_env, tmp_path):
    out = subprocess.run(["nice", "-n", "5", sys.executable, str(REPO / "bench" / "learn_cpu.py"), "--quick",
                          "--no-control-eval", "--out", str(tmp_path / "learn")],
                         env=thyme_env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    before, sft, rl = (result["held_out"][k] for k in ("before_sft", "after_sft", "after_rl"))
    print(json.dumps(result, indent=1))
    assert before["well_formed"] <= 0.25 and before["code_use"] <= 0.25
    assert sft["well_formed"] >= 0.75 and sft["code_use"] >= 0.75
    assert sft["sandbox_ok"] is not None and sft["sandbox_ok"] >= 0.75
    assert rl["well_formed"] >= 0.75  # RL kept what SFT taught
    up, down = result["rl"]["reward"], result["rl_control"]["reward"]
    assert up[0] == down[0] and len(up) == len(down) == 8  # the same model, the same seeded first rollouts
    # full run: control 0.75 ... 0.375, 0.062 at steps 7-8; RL 0.781, 0.656 at the same steps
    assert sum(down[-2:]) / 2 <= down[0] - 0.3
    assert sum(up[-2:]) / 2 >= sum(down[-2:]) / 2 + 0.3
