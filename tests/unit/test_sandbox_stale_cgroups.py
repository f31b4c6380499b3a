"""Stale pool folders (sandbox/cgroups.py `_remove_stale`): pools starting at once must not crash each other.

Two pools starting together (two RL runs, or a run and a test on one machine) both find the folder a dead
process left and both remove it; the one that lists it second found it gone and raised FileNotFoundError,
which killed an RL rank at its first rollout (seen in bench/learn_cpu.py). An entry that cannot be listed is
now skipped. Checked on plain folders (no cgroup filesystem needed).
"""

from thyme_core.sandbox.cgroups import PREFIX, _remove_stale

DEAD = "999999999"  # above any pid_max: no /proc entry


def test_a_stale_pool_folder_is_removed_with_its_sessions(tmp_path):
    stale = tmp_path / f"{PREFIX}{DEAD}-abc"
    (stale / "session-1").mkdir(parents=True)
    _remove_stale(tmp_path, PREFIX)
    assert not stale.exists()


def test_a_folder_that_cannot_be_listed_any_more_is_skipped(tmp_path):
    # what another pool's removal leaves between the listing and the iterdir: an entry that is not a folder
    # (or no longer there); before the fix the iterdir's OSError escaped
    gone = tmp_path / f"{PREFIX}{DEAD}-gone"
    gone.write_text("")
    stale = tmp_path / f"{PREFIX}{DEAD}-abd"
    stale.mkdir()
    _remove_stale(tmp_path, PREFIX)
    assert not stale.exists() and gone.exists()
