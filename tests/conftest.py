"""Shared fixtures. Tiers: tests/unit (default, seconds), tests/integration (marked `integration`: real
Prefect server on 127.0.0.1, real files), tests/gpu (marked `gpu`, opt-in)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def named_query_params(name: str):
    """Harmless values for a named query's `$name` parameters (the viewer's queries), () when it has none."""
    import re

    from thyme_core import catalog

    typed = {"limit": 10, "offset": 0, "step": 1, "sample_ids": []}
    names = set(re.findall(r"\$([A-Za-z_]\w*)", catalog.sql_text(f"queries/{name}")))
    return {k: typed.get(k, "") for k in names} if names else ()


@pytest.fixture
def home(tmp_path):
    from thyme_core.base.home import DataHome

    return DataHome(tmp_path / "home").ensure()


# The integration tier runs on 2 pytest-xdist workers, a module at a time (tests/run_tier.sh): its tests mostly
# wait on servers and workers, so two at once use the 2 cores. The longest modules go first, so the last minutes
# are not one long module on one worker while the other idles (times: README.md, "Tests").
LONGEST_FIRST = ("test_learn.py", "test_distributed.py", "test_ray_cluster.py", "test_train_rl.py",
                 "test_deployments.py", "test_runs_across_workers.py", "test_train_sft.py", "test_ui_browser.py")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the tier markers must already be on the items
def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: file order kept
    for item in items:
        # the tier is the folder under tests/ (not any "/gpu/" in the path: a checkout may live in one);
        # item.keywords also holds folder names, so ask for the marker itself
        try:
            tier = Path(str(item.fspath)).resolve().relative_to(REPO / "tests").parts[0]
        except ValueError:
            continue
        if tier == "integration" and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        if tier == "gpu" and item.get_closest_marker("gpu") is None:
            item.add_marker(pytest.mark.gpu)
