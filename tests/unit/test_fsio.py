"""Staging debris (base/fsio.py `clean_stale_staging`): entries named `.<pid>.<suffix>` whose writer died are
removed, a live writer's are kept, and no name in tmp/ can crash the clean-up that starts every prepare."""

import os
import subprocess
import sys

from thyme_core import catalog
from thyme_core.base.fsio import clean_stale_staging, pid_alive
from thyme_core.base.home import DataHome


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_writers_debris_goes_and_a_live_writers_stays(tmp_path):
    dead, alive = tmp_path / f".pull.{_dead_pid()}.x", tmp_path / f".pull.{os.getpid()}.y"
    dead.mkdir()
    alive.mkdir()
    assert clean_stale_staging(tmp_path) == 1
    assert not dead.exists() and alive.exists()


def test_a_number_no_pid_can_be_is_no_process_not_a_crash(tmp_path):
    # a killed catalog publish once left `.catalog.<pid>.<thread id>.duckdb`: the thread id (2**47 and up) read
    # as a pid made os.kill raise OverflowError, and every later prepare into that home failed at its plan
    (tmp_path / f".catalog.{os.getpid()}.{2**47 + 5}.duckdb").write_bytes(b"")
    assert not pid_alive(2**47 + 5) and not pid_alive(0) and not pid_alive(-1)
    clean_stale_staging(tmp_path)


def test_the_catalogs_own_staging_name_carries_its_pid_where_the_clean_up_reads_it(tmp_path, monkeypatch):
    home = DataHome(tmp_path / "home").ensure()
    seen = []
    real_connect = catalog.duckdb.connect
    monkeypatch.setattr(catalog.duckdb, "connect", lambda path, **kw: seen.append(path) or real_connect(path, **kw))
    catalog.publish(home)
    name = os.path.basename(seen[0])
    assert name.split(".")[-2] == str(os.getpid())
