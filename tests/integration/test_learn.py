"""It learns: the short version of bench/learn_cpu.py (issue 17), every stage through the real `thyme` commands.

On the zoom task with the learn-sized offline Qwen2.5-VL, seeded: `thyme synth`, `thyme prepare`, `thyme eval`
before SFT, `thyme train-sft` (torchrun, DeepSpeed ZeRO-2; stopped at 96 steps, the format half learned, so RL
has room), `thyme eval`, then side by side `thyme train-rl` (in-process here, the real sandbox in the rollouts, the
format reward sampled at text temperature 1.0) and its control on the negated reward.
Checked, with margins wide enough for the seeded run not to flake (the full run's figures: docs/benchmarks.md):
- SFT teaches the tool format: code use goes from none to most, well-formed responses from none to some;
- RL and its sign-flipped control start from the same model with the same seeded rollouts (their first steps
  agree exactly) and differ only in the sign of every advantage: RL's format reward ends well above the
  control's, and the control's goes down (the measurement can fail: with the advantages' sign flipped the
  update must break what the reward asks for). A flipped sign, a loss that never reaches the weights or a
  weight sync that never reaches the rollout engine fails one of these.
Not checked here: RL above a run with no learning, and on held-out pictures (the full bench: 4 steps of 16
rollouts are within the steps' luck of it), and accuracy (SFT does not teach the colour at this scale).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_sft_teaches_the_tool_format_and_rl_goes_its_way_while_the_sign_flipped_control_breaks_it(thyme_env, tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "learn_cpu.py"), "--quick", "--no-control-eval",
                          "--out", str(tmp_path / "learn")],
                         env=thyme_env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    before, sft = (result["held_out"][k] for k in ("before_sft", "after_sft"))
    assert before["well_formed"] == 0 and before["code_use"] <= 0.25
    assert sft["code_use"] >= 0.75 and sft["well_formed"] >= 0.25
    up, down = result["rl"]["reward"], result["rl_control"]["reward"]
    assert up[0] == down[0] and len(up) == len(down) == 4  # the same model, the same seeded first rollouts
    # seeded run here: RL 0.69, 0.63, 0.63, 0.81; control 0.69, 0.38, 0.38, 0.25 (steps 2-4: 0.69 against 0.33)
    assert sum(up[1:]) / 3 >= sum(down[1:]) / 3 + 0.2
    assert sum(down[-2:]) / 2 <= down[0] - 0.2
