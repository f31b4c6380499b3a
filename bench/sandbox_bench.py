"""Sandbox execution speed: Thyme's crop-and-zoom on a 2500x1400 JPEG, isolated pool vs the two baselines.

    .venv/bin/python bench/sandbox_bench.py [--runs 200] [--isolation bwrap]
    .venv/bin/python bench/sandbox_bench.py --compare REF [--rounds 6] [--runs 100]

--compare REF measures only the same-session latency, of this checkout ("after") and of git revision REF
("before", its thyme_core exported to a temporary folder), side by side in one run: `rounds` rounds, each
runs both in fresh processes (alternating which goes first, so load drifts hit both alike), each process
a fresh pool, 5 warm-up runs, then `runs` timed runs. p50 over all rounds and per round, and the ratio.

Measured side by side, each after 5 warm-up runs, sequentially (latency of one call):
  isolated_session      our pool, every run in the same live session (a trajectory's later code blocks)
  isolated_new_session  our pool, a new session (fresh forked interpreter, new folders) for every run;
                        latency is the run call, executions/s also pays closing each session
  subprocess            (a) a fresh `python -c` per call, which must import cv2 each time
  in_process            (b) exec() in this process with cv2 already imported: the original release's way,
                        no isolation at all
plus isolated_parallel: new sessions from one thread per core, executions/s only.
The last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from thyme_core.sandbox import SandboxPool, Status, prepare_code  # noqa: E402

CODE = """```python
import cv2
image_path = "/mnt/data/user_image.jpg"
img = cv2.imread(image_path)
x1, y1, x2, y2 = 1200, 500, 1700, 850
crop = img[y1:y2, x1:x2]
zoomed = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
out_path = "/mnt/data/temp_processed_images/zoomed_sign.jpg"
cv2.imwrite(out_path, zoomed)
print(out_path)
```"""


def make_image(path: Path) -> Path:
    """A photo-like 2500x1400 JPEG: smooth gradients, shapes and mild noise (compresses like a real photo)."""
    h, w = 1400, 2500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([xx / w * 200, yy / h * 180, (np.sin(xx / 90) * np.cos(yy / 70) + 1) * 100], axis=-1)
    rgb += np.random.default_rng(0).normal(0, 6, rgb.shape)
    rgb[500:850, 1200:1700] = (230, 40, 40)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def summarize(times: list[float], wall: float | None = None) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {
        "runs": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))], 2),
        "exec_per_s": round(len(ms) / (wall if wall is not None else sum(times)), 1),
    }


def timed(fn, runs: int, warmup: int = 5) -> dict:
    """Latency per call (fn may return its own, e.g. leaving out session clean-up); rate over the wall time."""
    for i in range(warmup):
        fn(-1 - i)
    times = []
    start = time.perf_counter()
    for i in range(runs):
        t = time.perf_counter()
        own = fn(i)
        times.append(own if own is not None else time.perf_counter() - t)
    return summarize(times, time.perf_counter() - start)


def bench_pool(pool: SandboxPool, image: Path, runs: int, new_session: bool) -> dict:
    def one(i: int) -> float:
        sid = f"new-{i}" if new_session else "same"
        t = time.perf_counter()
        r = pool.run(CODE, [image], session_id=sid)
        latency = time.perf_counter() - t
        if r.status != Status.OK or len(r.images) != 1:
            raise RuntimeError(f"sandbox run failed: {r}")
        if new_session:
            pool.close_session(sid)  # counted in executions/s, not in the call's latency
        return latency

    return timed(one, runs)


def bench_parallel(pool: SandboxPool, image: Path, runs: int, threads: int) -> dict:
    def one(i: int) -> float:
        t = time.perf_counter()
        r = pool.run(CODE, [image], session_id=f"par-{i}")
        pool.close_session(f"par-{i}")
        if r.status != Status.OK:
            raise RuntimeError(f"sandbox run failed: {r}")
        return time.perf_counter() - t

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        times = list(ex.map(one, range(runs)))
    return summarize(times, time.perf_counter() - start) | {"threads": threads}


def bench_subprocess(image: Path, out_dir: Path, runs: int) -> dict:
    code = prepare_code(CODE, str(image), Image.open(image).size, output_dir=str(out_dir))

    def one(_i: int) -> None:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert proc.stdout.strip().endswith("zoomed_sign.jpg")

    return timed(one, runs)


def bench_in_process(image: Path, out_dir: Path, runs: int) -> dict:
    import contextlib
    import io

    import cv2  # noqa: F401  (warm, like the original trainer process)

    code = prepare_code(CODE, str(image), Image.open(image).size, output_dir=str(out_dir))

    def one(_i: int) -> None:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
        assert buf.getvalue().strip().endswith("zoomed_sign.jpg")

    return timed(one, runs)


SAME_SESSION = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from thyme_core.sandbox import SandboxPool
code, image, runs = open(sys.argv[2]).read(), sys.argv[3], int(sys.argv[4])
with SandboxPool(isolation=sys.argv[5], workers=2) as pool:
    times = []
    for i in range(runs + 5):
        t = time.perf_counter()
        r = pool.run(code, [image], session_id="same")
        took = time.perf_counter() - t
        assert str(r.status) == "ok" and len(r.images) == 1, r
        if i >= 5:
            times.append(took)
print(json.dumps(times))
"""


def bench_compare(ref: str, image: Path, tmp: Path, runs: int, rounds: int, isolation: str) -> dict:
    """Same-session latency of this checkout vs git revision `ref`, interleaved in fresh processes."""
    repo = Path(__file__).resolve().parents[1]
    before = tmp / "before"
    before.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "thyme_core"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
    code_file = tmp / "code.py"
    code_file.write_text(CODE)
    # The interpreter by a path the sandbox can see (a worktree's .venv is often a link elsewhere).
    python = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
    times: dict[str, list[float]] = {"before": [], "after": []}
    per_round = []
    for r in range(rounds):
        order = ("after", "before") if r % 2 == 0 else ("before", "after")
        row = {}
        for which in order:
            root = repo if which == "after" else before
            out = subprocess.run([python, "-c", SAME_SESSION, str(root), str(code_file), str(image), str(runs), isolation],
                                 capture_output=True, text=True, check=True, cwd=tmp)
            t = json.loads(out.stdout.strip().splitlines()[-1])
            times[which] += t
            row[which] = round(statistics.median(t) * 1000, 2)
        per_round.append(row)
        print("round", r, row, file=sys.stderr)
    before_s, after_s = summarize(times["before"]), summarize(times["after"])
    return {"ref": ref, "rounds": rounds, "runs_per_round": runs, "before": before_s, "after": after_s,
            "per_round_p50_ms": per_round, "after_over_before_p50": round(after_s["p50_ms"] / before_s["p50_ms"], 3)}


def machine() -> str:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gb:.0f} GiB, {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--isolation", default="bwrap", choices=["bwrap", "none"])
    parser.add_argument("--compare", metavar="REF", help="same-session latency of this checkout vs git revision REF")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if args.compare:
        with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
            image = make_image(Path(tmp) / "scene.jpg")
            results = {"machine": machine(), "isolation": args.isolation, "image": "2500x1400 JPEG q90",
                       "same_session": bench_compare(args.compare, image, Path(tmp), args.runs, args.rounds,
                                                     args.isolation)}
        print(json.dumps(results))
        return
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        image = make_image(Path(tmp) / "scene.jpg")
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        results = {"machine": machine(), "isolation": args.isolation, "image": "2500x1400 JPEG q90"}
        with SandboxPool(isolation=args.isolation, root=Path(tmp) / "pool") as pool:
            results["isolated_session"] = bench_pool(pool, image, args.runs, new_session=False)
            print("isolated_session", results["isolated_session"], file=sys.stderr)
            results["isolated_new_session"] = bench_pool(pool, image, args.runs, new_session=True)
            print("isolated_new_session", results["isolated_new_session"], file=sys.stderr)
            results["isolated_parallel"] = bench_parallel(pool, image, args.runs, os.cpu_count() or 1)
            print("isolated_parallel", results["isolated_parallel"], file=sys.stderr)
        results["in_process"] = bench_in_process(image, out_dir, args.runs)
        print("in_process", results["in_process"], file=sys.stderr)
        results["subprocess"] = bench_subprocess(image, out_dir, args.runs)
        print("subprocess", results["subprocess"], file=sys.stderr)
    iso, iso_new = results["isolated_session"]["p50_ms"], results["isolated_new_session"]["p50_ms"]
    results["ratios"] = {
        "isolated_session_p50_over_in_process": round(iso / results["in_process"]["p50_ms"], 2),
        "isolated_new_session_p50_over_in_process": round(iso_new / results["in_process"]["p50_ms"], 2),
        "subprocess_p50_over_isolated_session": round(results["subprocess"]["p50_ms"] / iso, 1),
        "subprocess_p50_over_isolated_new_session": round(results["subprocess"]["p50_ms"] / iso_new, 1),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
