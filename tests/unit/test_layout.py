"""The wiring: thyme_core stays orchestration-free, SQL agrees with the record dataclasses, every flow
file holds one flow, every CLI subcommand loads and takes --home."""

import ast
import dataclasses
import subprocess
import sys
import typing

import pytest

from thyme_core import catalog, schema
from tests.conftest import REPO

_SQL_TYPES = {str: "VARCHAR", int: "BIGINT", float: "DOUBLE", float | None: "DOUBLE", bool: "BOOLEAN",
              list[str]: "VARCHAR[]", list[int]: "BIGINT[]", bool | None: "BOOLEAN"}


def test_thyme_core_never_imports_prefect():
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for p in (REPO / "thyme_core").rglob("*.py")
        if p.name != "__main__.py"
    )
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout


@pytest.mark.parametrize(
    "view, cls",
    [("sft_samples", schema.SftSample), ("rl_samples", schema.RlSample), ("images", schema.ImageRecord),
     ("rejects", schema.RejectRecord), ("prepare_shards", schema.ShardSummary), ("replays", schema.ReplayRecord),
     ("trajectories", schema.TrajectoryRecord), ("turns", schema.TurnRecord), ("executions", schema.ExecutionRecord),
     ("eval_results", schema.EvalResult), ("rl_rollouts", schema.RlRolloutRecord)],
)
def test_sql_views_match_record_dataclasses(home, view, cls):
    con = catalog.connect(home)
    described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {view}").fetchall()]
    hints = typing.get_type_hints(cls)
    assert described == [(f.name, _SQL_TYPES[hints[f.name]]) for f in dataclasses.fields(cls)]


def test_each_flow_file_defines_exactly_one_flow():
    for path in sorted((REPO / "flows").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        flows = [
            n.name for n in tree.body
            if isinstance(n, ast.FunctionDef)
            and any(getattr(d, "func", d).__dict__.get("id") == "flow" for d in n.decorator_list)
        ]
        assert flows == [path.stem], f"{path.name}: flows {flows} (one, named after the file)"


def test_every_subcommand_takes_home():
    from thyme_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"prepare", "sql"} <= set(sub.choices)
    for name, p in sub.choices.items():
        if name == "sandbox":  # a group: its subcommands carry --home
            continue
        assert any("--home" in a.option_strings for a in p._actions), name


def test_named_queries_run_on_an_empty_catalog(home):
    import re

    typed = {"limit": 10, "offset": 0, "step": 1, "only_samples": None, "sample_ids": []}
    for name in catalog.named_queries():
        named = set(re.findall(r"\$([A-Za-z_]\w*)", catalog.sql_text(f"queries/{name}")))  # the viewer's `$name`s
        columns, rows = catalog.query(home, name, {k: typed.get(k, "") for k in named} if named else ())
        assert columns and rows == [], name
