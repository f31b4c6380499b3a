"""What a model does on a benchmark, beyond accuracy: the figures that show SFT teaching the tool format.

For one evaluation run (`thyme eval --run-id ...`), over its trajectories (sql/queries/eval_behaviour.sql):
- well_formed: the share whose response has Thyme's layout, the RL format reward's test (rewards.format_ok:
  one think block, then one non-empty answer, nothing after);
- code_use: the share that ran code at least once;
- sandbox_ok: of all code executions, the share that succeeded (None when nothing ran);
- accuracy: the share answered right (the eval_results rows).
bench/learn_cpu.py prints them before SFT, after SFT and after RL; the learning test asserts their direction.
"""

from __future__ import annotations

from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.rl.rewards import format_ok


def run_behaviour(home: DataHome, run_id: str) -> dict:
    """{samples, well_formed, code_use, sandbox_ok, accuracy} of evaluation run `run_id`."""
    _, rows = catalog.named(home, "eval_behaviour", {"run_id": run_id})
    rows = [r[1:] for r in rows]
    if not rows:
        raise ThymeError(f"no trajectories of run {run_id!r} in {home.root}")
    executions = sum(r[3] for r in rows)
    n = len(rows)
    return {
        "samples": n,
        "well_formed": round(sum(format_ok(r[1]) for r in rows) / n, 4),
        "code_use": round(sum(r[2] > 0 for r in rows) / n, 4),
        "sandbox_ok": round(sum(r[4] for r in rows) / executions, 4) if executions else None,
        "accuracy": round(sum(bool(r[5]) for r in rows) / n, 4),
    }
