"""Benchmark: `thyme prepare` against the original Thyme data recipe, side by side in one run.

The recipe (the released data script's approach): load the whole Parquet into memory, a thread pool of
os.cpu_count() workers that base64-decode, PIL-open, composite/convert to RGB and save JPEG quality 95
every image, then one JSONL at the end. Ours: the prepare_sft_data flow through `thyme prepare` (Prefect,
worker pool, byte-for-byte store, path rewrite, Parquet + DuckDB catalog), once with the ephemeral API the
CLI starts itself and once against a running `prefect server` (the deployment set-up), and the same core
called without Prefect, whose steady state (warm workers, start-up excluded) gives the throughput and
whose difference to the flow gives the orchestration overhead. Each variant runs in its own subprocess; peak RSS is sampled over its whole
process tree from /proc. Run twice at two dataset sizes to show that our peak memory is flat.

Then the physical floor on realistic photos (--photos, default 3,000 unique ~1000x800 JPEGs of ~420 KB, one
per sample, in 12 row groups): FLOOR reads the Parquet, base64-decodes, sha256-hashes and writes each image,
in 2 processes taking alternate row groups, and nothing else. Beside it, in the same run: the core without
Prefect (the work) and `thyme prepare` against the long-lived local API of `thyme server start` (end to end,
as a user runs it), then the same command again with every shard already done (the skipped rerun).

    nice -n 5 .venv/bin/python bench/prepare_bench.py [--samples 3000] [--small 1000] [--photos 3000]
        [--workdir .cache/bench]

The last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPLIT = "wo_thinking_thyme_single_round"

RECIPE = r'''
import base64, io, json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import pyarrow.parquet as pq
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
rows = pq.read_table(src).to_pylist()          # the recipe loads everything
t_loaded = time.perf_counter()
os.makedirs(out, exist_ok=True)
def convert(job):
    i, k, b64 = job
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA"); bg = Image.new("RGB", im.size, (255, 255, 255)); bg.paste(im, mask=im.split()[3]); im = bg
    else:
        im = im.convert("RGB")
    path = os.path.join(out, f"{i}_{k}.jpg")
    im.save(path, "JPEG", quality=95)
    return i, k, path
jobs = [(i, k, b) for i, r in enumerate(rows) for k, b in enumerate(r["image"])]
paths = {}
with ThreadPoolExecutor(os.cpu_count()) as pool:
    for i, k, p in pool.map(convert, jobs):
        paths.setdefault(i, []).append(p)
t_done = time.perf_counter()
with open(os.path.join(out, "data.jsonl"), "w") as f:
    for i, r in enumerate(rows):
        f.write(json.dumps({"image": paths.get(i, []), "question": r["question"], "response": r["response"]}) + "\n")
print(json.dumps({"images": len(jobs), "load_s": t_loaded - t0, "process_s": t_done - t_loaded}))
'''

CORE = r'''
import json, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from thyme_core import prepare
from thyme_core.base.home import DataHome
src, home = sys.argv[1], DataHome(sys.argv[2]).ensure()
config = prepare.PrepareConfig(shard_rows=int(sys.argv[3]))
specs = prepare.plan(src, "''' + SPLIT + r'''", config)
with ProcessPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(abs, range(os.cpu_count())))     # warm the workers: steady state excludes start-up
    t0 = time.perf_counter()
    results = list(pool.map(prepare.prepare_shard, specs, [home] * len(specs), [config] * len(specs)))
    dt = time.perf_counter() - t0
print(json.dumps({"images": sum(r.summary.images_seen for r in results), "process_s": dt, "shards": len(specs)}))
'''


FLOOR_GROUP = r'''
def floor_group(pf, g, out):
    """The floor's work on one row group: read it, base64-decode, sha256-hash and write each image."""
    n = 0
    for images in pf.read_row_group(g, columns=["image"]).column(0).to_pylist():
        for b64 in images:
            data = base64.b64decode(b64)
            name = hashlib.sha256(data).hexdigest()
            os.makedirs(os.path.join(out, name[:2]), exist_ok=True)
            with open(os.path.join(out, name[:2], name + ".jpg"), "wb") as f:
                f.write(data)
            n += 1
    return n
'''

FLOOR = r'''
import base64, hashlib, json, os, sys, time
from multiprocessing import get_context
import pyarrow.parquet as pq
src, out = sys.argv[1], sys.argv[2]
''' + FLOOR_GROUP + r'''
def work(part):
    pf = pq.ParquetFile(src)
    return sum(floor_group(pf, g, out) for g in range(part, pf.metadata.num_row_groups, 2))
if __name__ == "__main__":
    t0 = time.perf_counter()
    with get_context("fork").Pool(2) as pool:
        images = sum(pool.map(work, [0, 1]))
    print(json.dumps({"images": images, "process_s": time.perf_counter() - t0}))
'''


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """(total, largest single process) resident memory of a process and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            rss[int(entry)] = int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, largest, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        largest = max(largest, rss.get(p, 0))
        todo += children.get(p, [])
    return total, largest


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, tuple[int, int], str]:
    """(wall seconds, (peak process-tree RSS, peak single-process RSS) in bytes, stdout) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    peak = [(0, 0)]

    def sample():
        while proc.poll() is None:
            total, largest = tree_rss_bytes(proc.pid)
            peak[0] = (max(peak[0][0], total), max(peak[0][1], largest))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}")
    return wall, peak[0], out


def dataset(workdir: Path, n: int) -> Path:
    path = workdir / f"data-{SPLIT}-{n}.parquet"
    if not path.exists():
        from thyme_core.synth import write_dataset

        t0 = time.perf_counter()
        write_dataset(path, SPLIT, n, seed=7, width=1000, height=800, row_group_size=100)
        print(f"generated {n} samples in {time.perf_counter() - t0:.0f} s -> {path}", file=sys.stderr)
    return path


def photo_dataset(workdir: Path, n: int, row_groups: int = 12) -> Path:
    """n samples of one unique ~1000x800 JPEG each (~420 KB: blurred noise, q90), in `row_groups` row groups.

    16 base photos; each sample's bytes differ by a JPEG comment segment naming its index, so every image is
    stored (no deduplication helps) while generating stays fast."""
    path = workdir / f"photos-{n}.parquet"
    if path.exists():
        return path
    import base64
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image, ImageFilter

    from thyme_core.synth.writer import SCHEMA

    rng = np.random.default_rng(7)
    bases = []
    for _ in range(16):
        noise = rng.integers(0, 256, (800, 1000, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noise).filter(ImageFilter.GaussianBlur(0.83)).save(buf, "JPEG", quality=90)
        bases.append(buf.getvalue())
    per_group = -(-n // row_groups)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for start in range(0, n, per_group):
            rows = []
            for i in range(start, min(n, start + per_group)):
                note = f"thyme bench photo {i}".encode()
                base = bases[i % len(bases)]
                jpeg = base[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + base[2:]
                rows.append({"image": [base64.b64encode(jpeg).decode()],
                             "question": f"<image>\nWhat does photo {i} show?", "response": f"Noise, photo {i}."})
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    tmp.replace(path)
    return path


@contextlib.contextmanager
def thyme_server(workdir: Path, env: dict):
    """The long-lived local API of `thyme server start` (state in the workdir), started outside the timings."""
    thyme = str(Path(sys.executable).parent / "thyme")
    port = 4300 + (os.getpid() + 1) % 1000
    subprocess.run([thyme, "server", "start", "--port", str(port)], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        subprocess.run([thyme, "server", "stop"], env=env, check=True, stdout=subprocess.DEVNULL)


def measure_photos(workdir: Path, n: int, rounds: int = 3) -> dict:
    """The floor against the work and `thyme prepare` end to end on realistic photos, side by side: `rounds`
    rounds of floor, core, prepare (each into an empty folder), medians reported with every round's figures.

    Each run writes ~1.3 GB of new files, which the kernel writes back to disk after the run has ended: without
    a `sync` between runs the next run pays for the previous one's writeback (measured: the same floor took 8.0
    to 11.9 s depending on what ran before it). So every run starts after a `sync` (outside its timing), and
    each leaves its own dirty pages behind, as every other does."""
    import statistics

    src = photo_dataset(workdir, n)
    py = sys.executable
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(workdir / "prefect-home"),
               PYTHONPATH=str(REPO), THYME_STATE_DIR=str(workdir / "thyme-state"))
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(py).parent / "thyme"), "prepare", str(src), "--split", SPLIT, "--home",
           str(workdir / "photos-flow-home")]
    figures: dict[str, list[float]] = {k: [] for k in ("floor_work", "floor_wall", "core_work", "core_wall",
                                                          "prepare_wall")}

    def fresh(*names: str) -> None:
        for d in names:
            shutil.rmtree(workdir / d, ignore_errors=True)
        os.sync()

    with open(src, "rb") as f:  # the source in the page cache for every run alike (the first read is the disk's)
        while f.read(1 << 24):
            pass
    with thyme_server(workdir, env):
        for _ in range(rounds):
            fresh("floor-out")
            fl_wall, _, fl_out = run_measured([py, "-c", FLOOR, str(src), str(workdir / "floor-out")], env)
            floor = json.loads(fl_out.strip().splitlines()[-1])
            fresh("photos-core-home")
            c_wall, _, c_out = run_measured([py, "-c", CORE, str(src), str(workdir / "photos-core-home"), "1000"],
                                            env)
            core = json.loads(c_out.strip().splitlines()[-1])
            fresh("photos-flow-home")
            f_wall, f_rss, _ = run_measured(cmd, env)
            assert floor["images"] == core["images"] == n, (floor, core)
            for key, value in (("floor_work", floor["process_s"]), ("floor_wall", fl_wall),
                               ("core_work", core["process_s"]), ("core_wall", c_wall), ("prepare_wall", f_wall)):
                figures[key].append(round(value, 2))
        os.sync()
        r_wall, _, _ = run_measured(cmd, env)  # every shard already done
    image_bytes = sum(p.stat().st_size for p in (workdir / "floor-out").rglob("*.jpg"))
    med = {k: statistics.median(v) for k, v in figures.items()}
    return {
        "photos": n, "photo_input_mb": round(src.stat().st_size / 1e6, 1),
        "photo_mean_kb": round(image_bytes / n / 1024), "photo_shards": core["shards"], "rounds": rounds,
        "floor_work_s": med["floor_work"], "floor_wall_s": med["floor_wall"],
        "ours_work_s": med["core_work"], "ours_core_wall_s": med["core_wall"],
        "ours_prepare_wall_s": med["prepare_wall"], "ours_prepare_tree_peak_rss_mb": round(f_rss[0] / 2**20),
        "ours_rerun_skipped_wall_s": round(r_wall, 2),
        "work_vs_floor": round(med["core_work"] / med["floor_work"], 2),
        "end_to_end_vs_floor": round(med["prepare_wall"] / med["floor_wall"], 2),
        "per_round": figures,
    }


def measure(workdir: Path, n: int, shard_rows: int, server_url: str) -> dict:
    src = dataset(workdir, n)
    py = sys.executable
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_HOME=str(workdir / "prefect-home"), PYTHONPATH=str(REPO))
    env.pop("PREFECT_API_URL", None)
    for d in ("recipe-out", "core-home", "flow-home", "server-home"):
        shutil.rmtree(workdir / d, ignore_errors=True)
    r_wall, r_rss, r_out = run_measured([py, "-c", RECIPE, str(src), str(workdir / "recipe-out")], env)
    recipe = json.loads(r_out.strip().splitlines()[-1])
    c_wall, c_rss, c_out = run_measured([py, "-c", CORE, str(src), str(workdir / "core-home"), str(shard_rows)], env)
    core = json.loads(c_out.strip().splitlines()[-1])
    thyme = str(Path(py).parent / "thyme")
    prepare_cmd = lambda home: [thyme, "prepare", str(src), "--split", SPLIT, "--home", str(workdir / home),
                                "--shard-rows", str(shard_rows)]
    f_wall, f_rss, _ = run_measured(prepare_cmd("flow-home"), env)  # ephemeral API started by the CLI
    s_wall, s_rss, _ = run_measured(prepare_cmd("server-home"), dict(env, PREFECT_API_URL=server_url))
    images = recipe["images"]
    assert core["images"] == images, (core, recipe)
    mb = lambda b: round(b / 2**20)
    return {
        "samples": n, "images": images, "input_mb": round(src.stat().st_size / 1e6, 1),
        "recipe_images_per_s": round(images / recipe["process_s"], 1), "recipe_load_s": round(recipe["load_s"], 2),
        "recipe_wall_s": round(r_wall, 2), "recipe_peak_rss_mb": mb(r_rss[0]),
        "ours_images_per_s": round(images / core["process_s"], 1),
        "ours_core_wall_s": round(c_wall, 2), "ours_core_peak_rss_mb": mb(c_rss[0]),
        "ours_flow_wall_s": round(f_wall, 2), "ours_flow_tree_peak_rss_mb": mb(f_rss[0]),
        "ours_flow_largest_process_rss_mb": mb(f_rss[1]),
        "ours_flow_on_server_wall_s": round(s_wall, 2), "ours_flow_on_server_tree_peak_rss_mb": mb(s_rss[0]),
        "orchestration_overhead_s": round(f_wall - c_wall, 2),
        "orchestration_overhead_on_server_s": round(s_wall - c_wall, 2),
        "steady_speedup": round(recipe["process_s"] / core["process_s"], 2),
        "end_to_end_speedup": round(r_wall / f_wall, 2),
        "end_to_end_speedup_on_server": round(r_wall / s_wall, 2),
    }


@contextlib.contextmanager
def prefect_server(workdir: Path):
    """A running `prefect server` on 127.0.0.1 (the deployment set-up), started outside the timings."""
    port = 4300 + os.getpid() % 1000
    env = dict(os.environ, PREFECT_HOME=str(workdir / "server-prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


PER_SHARD = r'''
import base64, hashlib, json, os, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from thyme_core.base.home import DataHome
from thyme_core.prepare import shards
src, root, groups = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
home = DataHome(root / "home").ensure()
config = shards.PrepareConfig(shard_rows=pq.ParquetFile(src).metadata.row_group(0).num_rows)
specs = shards.plan(src, "''' + SPLIT + r'''", config, home)
''' + FLOOR_GROUP + r'''
floor_s, ours_s = [], []
for g in range(min(groups, len(specs))):
    os.sync()
    t = time.perf_counter(); floor_group(pq.ParquetFile(src), g, str(root / "floor")); floor_s.append(round(time.perf_counter() - t, 3))
    os.sync()
    t = time.perf_counter(); shards.prepare_shard(specs[g], home, config); ours_s.append(round(time.perf_counter() - t, 3))
print(json.dumps({"floor_s": floor_s, "ours_s": ours_s, "ours_vs_floor": round(sum(ours_s) / sum(floor_s), 3)}))
'''


def measure_per_shard(workdir: Path, n: int, groups: int) -> dict:
    """One process, no pool: the floor's work on a row group, then our shard of the same rows, alternated with a
    `sync` before each: what each image costs us beyond the floor, with no contention between processes."""
    src = photo_dataset(workdir, n)
    root = workdir / "per-shard"
    shutil.rmtree(root, ignore_errors=True)
    try:
        _, _, out = run_measured([sys.executable, "-c", PER_SHARD, str(src), str(root), str(groups)],
                                 dict(os.environ, PYTHONPATH=str(REPO)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"per_shard": json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=3000, help="samples in the main run (each: 1 original + 1 processed)")
    ap.add_argument("--small", type=int, default=1000, help="samples in the second run (flat-memory check)")
    ap.add_argument("--shard-rows", type=int, default=500)
    ap.add_argument("--photos", type=int, default=3000, help="realistic photos for the floor comparison (0: skip)")
    ap.add_argument("--skip-synthetic", action="store_true", help="only the floor comparison on photos")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of floor / core / prepare on the photos (medians)")
    ap.add_argument("--per-shard", type=int, default=0, metavar="N",
                    help="also: N photo row groups, floor and our shard alternated in one process (no pool)")
    ap.add_argument("--workdir", default=str(REPO / ".cache" / "bench"))
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 1)}
    if not args.skip_synthetic:
        with prefect_server(workdir) as url:
            big = measure(workdir, args.samples, args.shard_rows, url)
            print(json.dumps(big), file=sys.stderr)
            small = measure(workdir, args.small, args.shard_rows, url)
            print(json.dumps(small), file=sys.stderr)
        result.update(big, small_samples=small["samples"],
                      small_ours_flow_tree_peak_rss_mb=small["ours_flow_tree_peak_rss_mb"],
                      small_ours_flow_largest_process_rss_mb=small["ours_flow_largest_process_rss_mb"],
                      small_ours_core_peak_rss_mb=small["ours_core_peak_rss_mb"],
                      small_recipe_peak_rss_mb=small["recipe_peak_rss_mb"])
    if args.photos:
        photos = measure_photos(workdir, args.photos, args.rounds)
        print(json.dumps(photos), file=sys.stderr)
        result.update(photos)
    if args.per_shard:
        result.update(measure_per_shard(workdir, args.photos or 3000, args.per_shard))
    result["load_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
