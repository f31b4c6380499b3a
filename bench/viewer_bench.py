"""Benchmark: the viewer's pages and every named query on a big synthetic catalog.

Builds a home whose catalog holds N trajectories (one evaluation run over three benchmarks and one RL run of
many steps) and M execution + turn rows, written straight as Parquet parts in the layout the agent, eval and RL
code publish (shards/agent/<key>/, shards/rl/<key>/step-N/), with a few real images so the trajectory page does
its crop matching. Then it times, in one process, every named query of sql/queries/ (bound to a real run/step
where it takes parameters) and the viewer's pages (runs, eval run, a category's samples, a trajectory cold and
warm, an RL step, RL curves), each the median of a few runs after one warm-up. A trajectory's first view ("cold":
its images decoded, its crop matched) is the median of three trajectories after the crop caches are cleared, in a
process that has shown pages; the process's very first page apart, after the warm-up the live server runs at
start (Pages.warm: templates compiled, lexer and OpenCV started), which is timed too. Last, a few named queries
through catalog.duckdb as the duckdb CLI runs them (catalog.publish writes it into the bench's home).

    .venv/bin/python bench/viewer_bench.py [--trajectories 100000] [--exec-turn-rows 10000000] [--workdir .cache/viewer-bench]

The catalog is built once per size and reused (delete the workdir to rebuild). The last line of stdout is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import io
import re
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from thyme_core.base.home import DataHome  # noqa: E402
from thyme_core.catalog.schema import (EvalResult, ExecutionRecord, RlRolloutRecord, TrajectoryRecord, TurnRecord,  # noqa: E402
                               arrow_schema)

EVAL_RUN, RL_KEY = "eval-benchbench0001", "benchkey00000001"
BENCHMARKS = ("VStar", "HRBench4K", "MathVista")
STOPS = np.array(["answer"] * 8 + ["length", "round_limit"])
STATUSES = np.array(["ok"] * 7 + ["error", "timeout", "error"])
ERRTYPES = {"error": "NameError", "timeout": "timeout"}


def _images(home: DataHome) -> list[tuple[str, str, str, str]]:
    """(input sha, input path, crop sha, crop path) for a few real images: textured inputs and a crop of each."""
    from PIL import Image

    from thyme_core.images.store import ImageStore, prepare_image

    store, rng, out = ImageStore(home.root, home.tmp_dir), np.random.default_rng(3), []
    for i in range(4):
        base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize((1280, 960), Image.BILINEAR)
        crop = im.crop((200 + 50 * i, 150, 520 + 50 * i, 390)).resize((640, 480))
        pair = []
        for picture in (im, crop):
            buf = io.BytesIO()
            picture.save(buf, "PNG")
            prepared = prepare_image(buf.getvalue())
            store.put(prepared)
            pair += [prepared.sha256, prepared.relpath]
        out.append(tuple(pair))
    return out


def _write(folder: Path, name: str, cls, columns: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema(cls)
    table = pa.table({f.name: columns[f.name] for f in schema}, schema=schema)
    pq.write_table(table, folder / f"{name}.parquet", compression="zstd")


def _part(home: DataHome, key: str, run: str, ids: list[str], per: int, images, rng, bench: str | None,
          correct) -> None:
    n = len(ids)
    folder = home.shards_dir / "agent" / key
    pick = rng.integers(0, len(images), n)
    tokens = [list(range(300))] * n
    stop = STOPS[rng.integers(0, len(STOPS), n)]
    _write(folder, "trajectories", TrajectoryRecord, {
        "run_id": [run] * n, "sample_id": ids, "benchmark": [bench or ""] * n,
        "question": [f"Question {s}: what is written on the small sign near the door?" for s in ids],
        "image_sha256": [[images[p][0], images[p][2]] for p in pick],
        "image_paths": [[images[p][1], images[p][3]] for p in pick],
        "response": ["<think>Zoom in.<code>...</code></think><answer>A</answer>"] * n,
        "answer": ["A"] * n, "correct": correct, "stop_reason": stop.tolist(), "rounds": [per] * n,
        "prompt_tokens": [200] * n, "generated_tokens": [80] * n, "sandbox_tokens": [20] * n,
        "image_tokens": [150] * n, "total_tokens": [300] * n, "token_ids": tokens, "token_mask": tokens,
        "image_offsets": [[10, 200]] * n, "image_grid_thw": [[1, 10, 10, 1, 10, 10]] * n,
        "generate_s": [1.0] * n, "sandbox_s": [0.1] * n, "total_s": [1.1] * n, "backend": ["vllm"] * n,
        "model": ["Thyme-7B"] * n, "config": ["cfg"] * n})
    rounds = np.tile(np.arange(per), n)
    sample = np.repeat(np.array(ids, dtype=object), per)
    status = STATUSES[rng.integers(0, len(STATUSES), n * per)]
    crop = np.repeat(pick, per)
    _write(folder, "turns", TurnRecord, {
        "run_id": [run] * (n * per), "sample_id": sample, "round": rounds,
        "text": np.where(rounds % 2 == 0, "Let me crop the region with the sign.", "Zoom further."),
        "code": ["from PIL import Image\nimg = Image.open(image_path)\nprint('/mnt/data/x.png')"] * (n * per),
        "generated_tokens": rng.integers(10, 200, n * per), "finish": ["code"] * (n * per)})
    _write(folder, "executions", ExecutionRecord, {
        "run_id": [run] * (n * per), "sample_id": sample, "round": rounds, "status": status,
        "error_type": [ERRTYPES.get(s, "") for s in status], "error": np.where(status == "ok", "", "Error: x"),
        "stdout": np.where(status == "ok", "/mnt/data/temp_processed_images/x.png", ""),
        "duration_s": rng.random(n * per),
        "output_image_sha256": [[images[c][2]] if s == "ok" else [] for c, s in zip(crop, status)],
        "fed_back": np.where(status == "ok", "image", "error"), "feedback_tokens": [50] * (n * per)})


def build(home: DataHome, n_traj: int, exec_turn_rows: int, eval_shard: int = 1000) -> dict:
    rng = np.random.default_rng(7)
    home.ensure()
    images = _images(home)
    per = max(1, exec_turn_rows // (2 * n_traj))  # executions = turns = per per trajectory
    n_eval, n_rl = n_traj * 6 // 10, n_traj - n_traj * 6 // 10
    for start in range(0, n_eval, eval_shard):
        stop = min(n_eval, start + eval_shard)
        bench = BENCHMARKS[start * len(BENCHMARKS) // n_eval]
        idx = [str(i) for i in range(start, stop)]
        ids = [f"{bench}:{i}" for i in idx]
        correct = (rng.random(len(ids)) < 0.6).tolist()
        key = f"eval-{start:08d}"
        _part(home, key, EVAL_RUN, ids, per, images, rng, bench, correct)
        cats = [f"cat{int(i) % 7}" for i in idx]
        _write(home.shards_dir / "agent" / key, "eval_results", EvalResult, {
            "run_id": [EVAL_RUN] * len(ids), "benchmark": [bench] * len(ids), "index": idx, "category": cats,
            "sample_id": ids, "prediction": ["A"] * len(ids), "choice": ["A"] * len(ids),
            "answer": ["A" if c else "B" for c in correct], "correct": correct,
            "stop_reason": ["answer"] * len(ids), "cycle_category": [""] * len(ids), "l2_category": [""] * len(ids),
            "protocol": ["thyme"] * len(ids), "matched_by": ["thyme"] * len(ids), "attempts": [1] * len(ids)})
    group, steps = 4, max(1, n_rl // 400)
    per_step = n_rl // steps
    run = f"rl-{RL_KEY}"
    for step in range(1, steps + 1):
        members = np.arange(per_step)
        ids = [f"s{step:05d}/p{m // group}:{m % group}" for m in members]
        _part(home, f"{run}-step-{step:05d}", run, ids, per, images, rng, None, [None] * per_step)
        reward = np.round(rng.random(per_step) * 1.5, 2)
        _write(home.shards_dir / "rl" / RL_KEY / f"step-{step:05d}", "rl_rollouts", RlRolloutRecord, {
            "run": [run] * per_step, "step": [step] * per_step, "group": members // group,
            "member": members % group, "prompt_id": [f"p{m // group}" for m in members], "sample_id": ids,
            "reward": reward, "reward_reason": [""] * per_step, "reward_format": (reward > 0.4).astype(float),
            "reward_accuracy": (reward > 0.9).astype(float),
            "reward_consistency": [float(r > 1.2) if r > 0.9 else None for r in reward],
            "advantage": reward - reward.mean(),
            "kept": (rng.random(per_step) < 0.8).tolist(), "limit": [""] * per_step})
    run_dir = home.root / "runs" / "rl" / RL_KEY
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"group_size": group, "max_steps": steps}))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "reward_mean": 0.5, "kl_mean": 0.01 * s, "clip_fraction": 0.1, "grad_norm": 1.0,
         "rollouts_per_s": 3.0, "engine_wait_share": 0.2, "code_rate": 0.9, "code_ok_rate": 0.7}) + "\n"
        for s in range(1, steps + 1)))
    return {"trajectories": n_traj, "executions": n_traj * per, "turns": n_traj * per, "rl_steps": steps,
            "eval_shards": -(-n_eval // eval_shard)}


def timed(fn, repeat: int = 5) -> dict:
    """Median wall and CPU milliseconds (CPU: every thread of this process, so on a loaded machine it says what
    the work costs, while wall says what this run waited)."""
    fn()  # warm-up: DuckDB's file metadata cache, Python imports
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_ms": round(statistics.median(wall) * 1000, 1), "cpu_ms": round(statistics.median(cpu) * 1000, 1)}


def cli_queries(home: DataHome, params: dict) -> dict:
    """A few named queries through catalog.duckdb, as the duckdb CLI runs them (schema.sql's views over globs),
    written by catalog.publish (which also adds the home's typed empty parts)."""
    import duckdb

    from thyme_core import catalog as core_catalog

    core_catalog.publish(home)
    con = duckdb.connect(str(home.catalog_path), read_only=True, config={"file_search_path": str(home.root)})
    out = {}
    for name in ("exec_errors", "exec_success_by_round", "trajectory_rounds"):
        text = core_catalog.sql_text(f"queries/{name}")
        bound = {k: v for k, v in params.items() if re.search(rf"\${k}\b", text)}
        out[name] = timed(lambda: con.execute(text, bound).fetchall(), repeat=3)
        print(f"duckdb CLI (catalog.duckdb) {name}: {out[name]}", flush=True)
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trajectories", type=int, default=100_000)
    ap.add_argument("--exec-turn-rows", type=int, default=10_000_000)
    ap.add_argument("--workdir", default=str(REPO / ".cache" / "viewer-bench"))
    args = ap.parse_args()
    home = DataHome(Path(args.workdir) / f"home-{args.trajectories}-{args.exec_turn_rows}")
    marker = home.root / "BUILT.json"
    if not marker.exists():
        t0 = time.perf_counter()
        info = build(home, args.trajectories, args.exec_turn_rows)
        info["build_s"] = round(time.perf_counter() - t0, 1)
        marker.write_text(json.dumps(info))
    info = json.loads(marker.read_text())
    print("catalog:", info, flush=True)

    from thyme_core import catalog as core_catalog
    from thyme_core.viewer import db

    t0 = time.perf_counter()
    cat = db.Catalog(home)
    cat.sql("SELECT 1")  # the first query declares the agent views (lists the shard folders)
    open_ms = round((time.perf_counter() - t0) * 1000, 1)
    params = {"run_id": EVAL_RUN, "run": f"rl-{RL_KEY}", "step": 2, "sample_id": "VStar:17", "benchmark": "VStar",
              "category": "cat3", "outcome": "", "stop_reason": "", "error_type": "NameError", "search": "", "limit": 200,
              "offset": 0, "sample_ids": [f"VStar:{i}" for i in range(3, 1400, 7)]}
    queries = {}
    for name in core_catalog.named_queries():
        text = core_catalog.sql_text(f"queries/{name}")
        bound = {k: v for k, v in params.items() if re.search(rf"\${k}\b", text)}
        queries[name] = timed(lambda: cat.query(name, **bound), repeat=3)
        print(f"query {name}: {queries[name]}", flush=True)
    from thyme_core.viewer import pages
    from thyme_core.viewer.links import LiveLinks

    views = pages.Pages(cat, LiveLinks())
    sample = "s00002/p3:1"
    page_fns = {
        "runs": lambda: views.runs(),
        "eval_run": lambda: views.eval_run(EVAL_RUN),
        "eval_samples": lambda: views.samples(EVAL_RUN, "VStar", "cat3", {}),
        "eval_samples_filtered": lambda: views.samples(EVAL_RUN, "VStar", "cat3",
                                                       {"outcome": "wrong", "error_type": "NameError", "q": "sign"}),
        "trajectory": lambda: views.trajectory(EVAL_RUN, "VStar:17"),
        "rl_run": lambda: views.rl_run(RL_KEY),
        "rl_step": lambda: views.rl_step(RL_KEY, 2),
        "rl_trajectory": lambda: views.trajectory(f"rl-{RL_KEY}", sample),
    }
    def once(fn) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return {"wall_ms": round((time.perf_counter() - t0) * 1000, 1),
                "cpu_ms": round((time.process_time() - c0) * 1000, 1)}

    # the live server's start-up warm-up (App runs Pages.warm: templates compiled, Pygments' lexer and OpenCV
    # started, the runs page and a trajectory lookup), then the process's first page after it
    server_warm = once(views.warm)
    process_first = once(lambda: views.trajectory(EVAL_RUN, "VStar:18"))
    # a trajectory's first view in a server that has shown pages: its images decoded and its crop matched
    cold = []
    for sid in ("VStar:101", "VStar:102", "VStar:103"):
        pages._region.cache_clear()
        pages._input_gray.cache_clear()
        cold.append(once(lambda: views.trajectory(EVAL_RUN, sid)))
    cold = {k: statistics.median(c[k] for c in cold) for k in ("wall_ms", "cpu_ms")}
    pages_ms = {k: timed(fn) for k, fn in page_fns.items()}
    for k, v in pages_ms.items():
        print(f"page {k}: {v}", flush=True)
    cli = cli_queries(home, params)
    print(json.dumps({"catalog": info, "open_ms": open_ms, "server_warm_ms": server_warm, "cli_queries_ms": cli,
                      "trajectory_page_process_first_ms": process_first,
                      "trajectory_page_cold_ms": cold, "pages_ms": pages_ms,
                      "queries_ms": queries, "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
                      "max_query_wall_ms": max(q["wall_ms"] for q in queries.values()),
                      "max_query_cpu_ms": max(q["cpu_ms"] for q in queries.values()),
                      "max_page_wall_ms": max(p["wall_ms"] for p in pages_ms.values()),
                      "max_page_cpu_ms": max(p["cpu_ms"] for p in pages_ms.values())}))


if __name__ == "__main__":
    main()
