"""The per-machine model cache within a bound (thyme_core.versions.model_cache): least recently used versions go
first, a version a running process holds never goes (until the process is gone, however it ended), and a pull
never removes what it just pulled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.unit.test_model_versions import weights
from thyme_core.base.errors import ThymeError
from thyme_core.versions import model_cache
from thyme_core.versions.folders import pull_folder, push_folder
from thyme_core.versions.store import open_store


def cached(cache, names_sizes):
    """Version folders of the given sizes, least recently used first (mtimes a minute apart)."""
    now = time.time()
    for i, (name, size) in enumerate(names_sizes):
        folder = cache / (name * 64)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w" * size)
        os.utime(folder, (now - 600 + 60 * i, now - 600 + 60 * i))
    return [name * 64 for name, _ in names_sizes]


def test_least_recently_used_versions_go_first_until_the_cache_fits(tmp_path):
    a, b, c = cached(tmp_path, [("a", 100), ("b", 200), ("c", 300)])
    out = model_cache.prune(tmp_path, keep_bytes=350)
    assert [(r.sha256, r.removed) for r in out] == [(a, True), (b, True)]
    assert sorted(p.name for p in model_cache.versions(tmp_path)) == [c]
    assert not list((tmp_path / ".tmp").iterdir())  # removed whole, nothing left half-deleted
    with pytest.raises(ThymeError):
        model_cache.prune(tmp_path, keep_bytes=-1)


def test_a_version_a_running_process_holds_stays_until_that_process_is_gone(tmp_path):
    a, b = cached(tmp_path, [("a", 100), ("b", 100)])
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom thyme_core.versions import model_cache\n"
                               f"model_cache.pin({str(tmp_path / a)!r})\nprint('pinned', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "pinned"
        out = model_cache.prune(tmp_path, keep_bytes=0)
        assert [(r.sha256, r.removed) for r in out] == [(a, False), (b, True)]
        assert (tmp_path / a / "model.safetensors").is_file()
    finally:
        holder.send_signal(signal.SIGKILL)  # however it ends, the kernel drops its lock
        holder.wait()
    assert [(r.sha256, r.removed) for r in model_cache.prune(tmp_path, keep_bytes=0)] == [(a, True)]


def test_a_pull_prunes_to_the_bound_but_never_what_it_pulled_or_what_this_process_reads(tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "store"))
    shas = [push_folder(weights(tmp_path / f"w{i}", scale=i + 1), store, f"m{i}").manifest for i in range(3)]
    cache = tmp_path / "cache"
    monkeypatch.setenv("THYME_MODEL_CACHE_GB", "0")  # keep as little as can be kept
    pull_folder(store, f"m0@{shas[0]}", cache)  # (a `thyme model pull`: nobody reads it here)
    pull_folder(store, f"m1@{shas[1]}", cache, pin=True)  # (a training stage's start model)
    assert sorted(p.name for p in model_cache.versions(cache)) == [shas[1]]  # m0 went; m1 was just pulled
    pull_folder(store, f"m2@{shas[2]}", cache)
    assert sorted(p.name for p in model_cache.versions(cache)) == sorted(shas[1:])  # m1 is read by this process
    _, _, again = pull_folder(store, f"m0@{shas[0]}", cache)  # a removed version is pulled again, whole
    assert (again / "config.json").is_file()


def test_a_bad_bound_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("THYME_MODEL_CACHE_GB", "lots")
    with pytest.raises(ThymeError, match="THYME_MODEL_CACHE_GB"):
        model_cache.bound_from_env()
    monkeypatch.setenv("THYME_MODEL_CACHE_GB", "1.5")
    assert model_cache.bound_from_env() == 1_500_000_000
