"""Dispatch decisions (tasks/dispatch.py) against a fake API: a crashed child (its worker vanished) is sent
again, a failed child (its own error) fails the stage at once with that error in one line, and when one node
run of a multi-node stage fails the others are cancelled."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from prefect.states import Completed, Crashed, Failed

from tasks import dispatch
from thyme_core.base.errors import ThymeError


@dataclass
class FakeApi:
    outcomes: list  # the state of each child, in creation order
    created: list = field(default_factory=list)
    cancelled: list = field(default_factory=list)

    def start(self, stage, params, run_name):
        run = type("Run", (), {"id": len(self.created), "name": run_name, "params": params})()
        self.created.append(run)
        return run

    def wait(self, run_id):
        return type("Done", (), {"state": self.outcomes[run_id]})()


@pytest.fixture
def api(monkeypatch):
    def make(*outcomes):
        fake = FakeApi(list(outcomes))
        monkeypatch.setattr(dispatch, "start", fake.start)
        monkeypatch.setattr(dispatch, "wait", fake.wait)
        monkeypatch.setattr(dispatch, "cancel", fake.cancelled.extend)
        return fake

    return make


def test_a_crashed_child_is_dispatched_again_under_a_new_name(api):
    api(Crashed(message="worker gone"), Completed())
    assert dispatch.dispatch("sft", {"stage": 1}, "sft-stage1-abc-a1") == ["sft-stage1-abc-a1", "sft-stage1-abc-a1-r2"]


def test_a_failed_child_fails_the_stage_with_its_own_error_once(api):
    fake = api(Failed(message="Flow run encountered an exception: ThymeError: no samples in splits ['x']"))
    with pytest.raises(ThymeError) as err:
        dispatch.dispatch("sft", {}, "sft-stage1-abc-a1")
    assert len(fake.created) == 1  # a user error is not retried
    assert str(err.value) == ("stage sft: child run sft-stage1-abc-a1 failed: Flow run encountered an exception: "
                              "ThymeError: no samples in splits ['x']")


def test_a_crash_on_the_last_attempt_is_reported(api):
    api(Crashed(message="a"), Crashed(message="worker gone\nagain"))
    with pytest.raises(ThymeError, match="crashed: again$"):
        dispatch.dispatch("rl", {}, "rl-rl-k-a1", attempts=2)


def test_node_runs_get_their_ranks_and_a_failed_node_cancels_the_rest(api):
    fake = api(Failed(message="rendezvous timed out"), Completed())
    with pytest.raises(ThymeError, match="node0 failed: rendezvous timed out"):
        dispatch.dispatch("sft", {"nnodes": 2}, "sft-stage1-k-a1", nodes=2)
    assert [r.params["node_rank"] for r in fake.created] == [0, 1]
    assert fake.cancelled == [1]
