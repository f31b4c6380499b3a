"""The wiring: thyme_core stays orchestration-free, SQL agrees with the record dataclasses, every flow
file holds one flow, every CLI subcommand loads and takes --home."""

import ast
import dataclasses
import subprocess
import sys
import typing

import pytest

from thyme_core import catalog
from thyme_core.catalog import schema
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
     ("rejects", schema.RejectRecord), ("prepare_shards", schema.ShardSummary),
     ("prepare_shard_runs", schema.ShardRun), ("replays", schema.ReplayRecord),
     ("trajectories", schema.TrajectoryRecord), ("turns", schema.TurnRecord), ("executions", schema.ExecutionRecord),
     ("eval_results", schema.EvalResult), ("rl_rollouts", schema.RlRolloutRecord)],
)
def test_sql_views_match_record_dataclasses(home, view, cls):
    catalog.publish(home)
    con = catalog.read(home)
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
        if name == "server":  # the long-lived Prefect API serves every home: it has none of its own
            continue
        assert any("--home" in a.option_strings for a in p._actions), name


def test_named_queries_run_on_an_empty_catalog(home):
    from tests.conftest import named_query_params

    catalog.publish(home)
    for name in catalog.named_queries():
        columns, rows = catalog.named(home, name, named_query_params(name))
        assert columns and rows == [], name


def test_nothing_loose_at_the_thyme_core_root_but_the_shared_markup():
    loose = sorted(p.name for p in (REPO / "thyme_core").glob("*.py"))
    assert loose == ["__init__.py", "thyme_format.py"], "put new modules in the package named after what they hold"


def _import_graph(root):
    from thyme_core.base import versioning as v

    graph = {}
    for path in root.rglob("*.py"):
        module = v._module_of(path, root)
        ancestors = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}
        deps = {v._module_of(f, root) for name in v._imported(path, root) if (f := v._file_of(name, root))}
        graph[module] = deps - ancestors - {module}  # a package's own __init__ is not a cycle
    return graph


def _cycles(graph):
    order, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        order[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            comp = set()
            while not comp or node not in comp:
                comp.add(stack.pop())
            on.difference_update(comp)
            if len(comp) > 1:
                found.append(sorted(comp))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return found


def test_the_import_graph_of_thyme_core_has_no_cycles():
    assert _cycles(_import_graph(REPO / "thyme_core")) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    pkg = tmp_path / "thyme_core"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from thyme_core.a.y import g\n")  # lazy imports count
    (pkg / "a" / "y.py").write_text("from thyme_core.a import x\n")
    assert _cycles(_import_graph(pkg)) == [["thyme_core.a.x", "thyme_core.a.y"]]
