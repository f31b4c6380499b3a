"""Stale pool folders (sandbox/cgroups.py `_remove_stale`), on plain folders standing in for a cgroup tree: a
dead pool of this PID namespace goes; a live one, and any pool of another PID namespace (a test's private Ray
cluster, a container), whose pid /proc here cannot show, stay."""

import os
import subprocess

from thyme_core.sandbox import cgroups

DEAD = 4_194_305  # above the kernel's largest pid_max: no process has it


def test_only_this_namespaces_dead_pools_are_removed(tmp_path):
    here, other = cgroups._pid_namespace(), "4026530000"
    names = {
        "dead here": f"{cgroups.PREFIX}{DEAD}-aaaa-{here}",
        "alive here": f"{cgroups.PREFIX}{os.getpid()}-bbbb-{here}",
        "another namespace": f"{cgroups.PREFIX}{DEAD}-cccc-{other}",  # its pid means nothing here
        "older name, dead": f"{cgroups.PREFIX}{DEAD}-dddd",  # no namespace in the name: judged here, as before
        "not ours": f"other-{DEAD}-eeee",
    }
    for name in names.values():
        (tmp_path / name / "session-1").mkdir(parents=True)
    cgroups._remove_stale(tmp_path, cgroups.PREFIX)
    left = {what for what, name in names.items() if (tmp_path / name).exists()}
    assert left == {"alive here", "another namespace", "not ours"}


def test_a_folder_that_cannot_be_listed_any_more_is_skipped(tmp_path):
    # Two pools starting at once both remove a dead pool's folder; the second one's listing used to raise
    # FileNotFoundError, which killed an RL rank at its first rollout (bench/learn_cpu.py). Here: an entry
    # that is not a folder any more stands for the one removed between the listing and the iterdir.
    gone = tmp_path / f"{cgroups.PREFIX}{DEAD}-gone"
    gone.write_text("")
    stale = tmp_path / f"{cgroups.PREFIX}{DEAD}-abd"
    stale.mkdir()
    cgroups._remove_stale(tmp_path, cgroups.PREFIX)
    assert not stale.exists() and gone.exists()


def test_a_dead_pools_leftover_sessions_are_killed_so_its_folder_can_go(tmp_path):
    # A session outlived its host (stopped between runs, it never noticed): it keeps its cgroup folder, and
    # every new pool used to wait ~1 s on that folder's rmdir. The folder lists it in cgroup.procs.
    leftover = subprocess.Popen(["sleep", "600"])
    try:
        session = tmp_path / f"{cgroups.PREFIX}{DEAD}-ffff-{cgroups._pid_namespace()}" / "session-1"
        session.mkdir(parents=True)
        (session / "cgroup.procs").write_text(f"{leftover.pid}\n")
        cgroups._remove_stale(tmp_path, cgroups.PREFIX)
        assert leftover.wait(timeout=10) == -9
    finally:
        leftover.kill()
