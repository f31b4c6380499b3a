"""Honest code never dies: the root cause of "spare interpreters die while idle" and the retry that covers
any death the pool did not cause (real bwrap sandbox, real threads, a real CPU hog)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from thyme_core.sandbox import SandboxPool, Status

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make setup)")
OUT = "/mnt/data/temp_processed_images"


def test_a_template_started_by_a_thread_that_ended_keeps_its_sessions_alive():
    # The root cause: bwrap's --die-with-parent killed a template (and every interpreter forked from it)
    # when the *thread* that started it ended. recycle_after=1 makes the thread start a fresh template.
    with SandboxPool(workers=2, spares=0, recycle_after=1) as pool:
        pool.run("pass", session_id="warm")
        worker = threading.Thread(target=lambda: pool.run("x = 41", session_id="from-thread"))
        worker.start()
        worker.join()
        time.sleep(0.5)
        r = pool.run("print(x + 1)", session_id="from-thread")
        assert r.status == Status.OK and r.stdout == "42\n" and not r.fresh_interpreter, r
        assert pool.dead_before_run == 0 and r.retry_reason == ""


def test_an_interpreter_killed_while_idle_is_retried_with_its_state_replayed():
    with SandboxPool(workers=1, spares=0) as pool:
        pool.run("x = 6", session_id="victim")
        pool.run("y = x * 7", session_id="victim")
        session = pool._sessions["victim"]
        session.template.call("kill", session.pid)  # as the kernel's OOM killer or an operator would
        r = pool.run("print(y)", session_id="victim")
        assert r.status == Status.OK and r.stdout == "42\n" and r.fresh_interpreter, r
        assert "found dead before the run" in r.retry_reason and "replaying 2 earlier" in r.retry_reason
        assert pool.dead_before_run == 1


def test_many_sessions_from_short_lived_threads_beside_a_cpu_hog_never_die():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    code_a = (f"from PIL import Image\nimport numpy as np\nn = {{i}}\n"
              f"Image.fromarray(np.full((64, 64, 3), n, np.uint8)).save('{OUT}/a.png')\nprint('{OUT}/a.png')")
    code_b = "print(n * 2)"

    def trajectory(i: int) -> tuple:
        sid = f"stress-{i}"
        first = pool.run(code_a.format(i=i), session_id=sid)
        second = pool.run(code_b, session_id=sid)
        pool.close_session(sid)
        return first, second

    try:
        with SandboxPool(workers=2, spares=2, recycle_after=7) as pool:
            results = []
            for round_no in range(3):  # each round's threads end with it (as the agent loop's do)
                with ThreadPoolExecutor(4) as ex:
                    results += list(ex.map(trajectory, range(round_no * 12, (round_no + 1) * 12)))
            deaths = [(a, b) for a, b in results if a.status != Status.OK or b.status != Status.OK]
            assert deaths == [] and pool.dead_before_run == 0
            assert [b.stdout for _, b in results] == [f"{i * 2}\n" for i in range(36)]
            assert all(len(a.images) == 1 and a.images[0].width == 64 for a, _ in results)
            assert all(a.retry_reason == b.retry_reason == "" for a, b in results)
    finally:
        hog.kill()
        hog.wait()
