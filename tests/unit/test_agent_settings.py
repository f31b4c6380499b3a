"""Every agent loop and sampling setting (AgentConfig) is declared once and reachable from each place that
runs the loop: the RL preset (and `--set`), the evaluate flow, and the infer/eval CLI."""

import dataclasses
import inspect

import pytest

from thyme_core.agent.config import AgentConfig, from_settings
from thyme_core.base.errors import ThymeError
from thyme_core.rl.config import load_preset

# A valid value other than the default for every field. A new AgentConfig field fails the first test until it
# is listed here, and the others then check it is reachable everywhere.
VALUES = {"max_rounds": 3, "max_length": 4096, "max_new_tokens": 100, "text_temperature": 0.7,
          "code_temperature": 0.1, "top_p": 0.5, "top_k": 7, "repetition_penalty": 1.1, "seed": 9,
          "reserve_tokens": 5, "max_output_chars": 99, "max_images_per_output": 1, "max_images": 4,
          "timeout_s": 3.0, "isolation": "none", "system_prompt": "p.txt"}


def test_the_table_covers_every_field():
    assert set(VALUES) == {f.name for f in dataclasses.fields(AgentConfig)}
    assert all(VALUES[f.name] != f.default for f in dataclasses.fields(AgentConfig))


@pytest.mark.parametrize("name", sorted(VALUES))
def test_reachable_from_the_rl_preset(name):
    cfg = load_preset("rl_tiny", **{name: VALUES[name]})
    got = getattr(cfg.rollout_config(step=0).agent_config(), name)
    assert got == VALUES[name]


def test_the_rl_rollout_seed_moves_with_the_step():
    cfg = load_preset("rl_tiny", seed=9)
    assert [cfg.rollout_config(s).agent_config().seed for s in (1, 2)] == [10, 11]


def test_reachable_from_the_evaluate_flow():
    from flows.evaluate import evaluate

    assert "agent_settings" in inspect.signature(evaluate.fn).parameters
    assert dataclasses.asdict(from_settings(VALUES)) == VALUES
    with pytest.raises(ThymeError, match="unknown agent settings \\['top_q'\\]; valid: .*top_p"):
        from_settings({"top_q": 0.9})


def test_reachable_from_the_cli():
    from thyme_cli.cmd_infer import agent_settings
    from thyme_cli.main import build_parser

    argv = ["eval", "bench.tsv"]
    for name, value in VALUES.items():
        argv += ["--unsafe-no-isolation"] if name == "isolation" else [f"--{name.replace('_', '-')}", str(value)]
    args = build_parser().parse_args(argv)
    assert agent_settings(args) == VALUES
    assert agent_settings(build_parser().parse_args(["eval", "bench.tsv"])) == dataclasses.asdict(AgentConfig())
