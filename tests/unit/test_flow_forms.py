"""The UI's run form of every deployment explains every parameter and constrains what it can.

Prefect builds the form from the flow's signature and the Args section of its docstring, read from the
entrypoint's source exactly as `prefect deploy` does; a parameter without a line there shows a bare field."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO

DEPLOYMENTS = yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())["deployments"]


def _schema(entrypoint: str) -> dict:
    from prefect.utilities.callables import parameter_schema_from_entrypoint

    return parameter_schema_from_entrypoint(str(REPO / entrypoint)).model_dump()


@pytest.mark.parametrize("entrypoint", sorted({d["entrypoint"] for d in DEPLOYMENTS}))
def test_every_parameter_has_a_description(entrypoint):
    props = _schema(entrypoint)["properties"]
    assert props and [name for name, p in props.items() if not (p.get("description") or "").strip()] == []


def test_what_can_be_constrained_is():
    sft = _schema("flows/train_sft.py:train_sft")["properties"]
    assert sft["stage"]["enum"] == [1, 2]  # the form offers 1 or 2, nothing else
    prepare = _schema("flows/prepare_sft_data.py:prepare_sft_data")["properties"]
    assert prepare["shard_rows"]["minimum"] == 1 and prepare["verify"]["enum"] == ["structure", "decode"]
    replay = _schema("flows/replay_sft_data.py:replay_sft_data")["properties"]
    assert (replay["min_similarity"]["minimum"], replay["min_similarity"]["maximum"]) == (0, 1)
