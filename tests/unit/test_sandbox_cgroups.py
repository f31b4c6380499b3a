"""Stale pool folders (sandbox/cgroups.py `_remove_stale`), on plain folders standing in for a cgroup tree: a
dead pool of this PID namespace goes; a live one, and any pool of another PID namespace (a test's private Ray
cluster, a container), whose pid /proc here cannot show, stay."""

import os

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
