"""Shard throughput through the Ray engine vs the local warm pool on this machine: the engine's overhead.

Both sides prepare the same synthetic split (JPEGs of --size) with every core of this machine:
- local: prepare_shard over thyme_core's warm process pool into one home (what `thyme prepare` runs);
- cluster: a one-node Ray cluster (head with all cores) in a private network namespace, each shard a Ray task
  (the driver on the head node, connected to its GCS; `--client` goes through Ray Client, ray://) that prepares into a scratch home, writes its parts and images into a
  content-addressed store (a local folder here) and returns its entries; then the driver publishes the version.
Prefect is left out of both (its per-task cost is the same either way). Prints one JSON line last.

    sudo python bench/cluster_bench.py --n 400 --shard-rows 25       # needs root for `unshare -n`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="samples (2round: 3 images each)")
    ap.add_argument("--shard-rows", type=int, default=25)
    ap.add_argument("--size", default="1000x800")
    ap.add_argument("--client", action="store_true", help="connect through Ray Client (ray://) as a remote driver does")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.inside:
        cmd = ["unshare", "-n", "-p", "-f", "--kill-child", "--mount-proc", sys.executable, __file__, "--inside",
               *sys.argv[1:]]
        sys.exit(subprocess.run(cmd).returncode)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    source = make_source(work, args)
    cores = len(os.sched_getaffinity(0))
    local = run_local(source, work, args.shard_rows)
    try:
        cluster = run_cluster(source, work, args.shard_rows, cores, args.client)
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True)  # this PID namespace's only
        shutil.rmtree(work, ignore_errors=True)
    same = local.pop("manifest") == cluster.pop("manifest")
    print(json.dumps({"bench": "cluster", "driver": "ray client" if args.client else "on the head node", "cores": cores, "samples": args.n, "shard_rows": args.shard_rows,
                      "size": args.size, "local": local, "cluster": cluster, "same_version": same,
                      "cluster_vs_local_images_per_s": round(cluster["images_per_s"] / local["images_per_s"], 3)}))


def make_source(work: Path, args) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from thyme_core.synth import generate_records
    from thyme_core.synth.writer import SCHEMA

    w, h = (int(v) for v in args.size.split("x"))
    path = work / "src.parquet"
    rows = list(generate_records("2round", args.n, 0, w, h))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=args.shard_rows)
    return path


def _figures(wall: float, shards: int, images: int) -> dict:
    return {"wall_s": round(wall, 2), "shards": shards, "images": images,
            "shards_per_s": round(shards / wall, 2), "images_per_s": round(images / wall, 1)}


def run_local(source: Path, work: Path, shard_rows: int) -> dict:
    from thyme_core import prepare
    from thyme_core.base import workers
    from thyme_core.base.home import DataHome
    from thyme_core.versions.push import push
    from thyme_core.versions.store import LocalStore

    home, config = DataHome(work / "local-home"), prepare.PrepareConfig(shard_rows=shard_rows)
    workers.warm()
    specs = prepare.plan(source, "2round", config, home)
    started = time.perf_counter()
    futures = [workers.pool().submit(prepare.prepare_shard, s, home, config) for s in specs]
    results = [f.result() for f in futures]
    wall = time.perf_counter() - started
    manifest = push(home, LocalStore(work / "local-store"), "sft").manifest
    workers.shutdown()
    return {**_figures(wall, len(specs), sum(r.summary.images_seen for r in results)), "manifest": manifest}


def run_cluster(source: Path, work: Path, shard_rows: int, cores: int, client: bool) -> dict:
    from thyme_core import prepare
    from thyme_core.base.home import DataHome
    from thyme_core.cluster import stored
    from thyme_core.cluster.engine import Resources, engine
    from thyme_core.cluster.publish import publish_shards
    from thyme_core.versions.store import LocalStore

    subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--num-cpus={cores}",
                    "--include-dashboard=false", "--port=6391", "--ray-client-server-port=10001",
                    f"--temp-dir={work}/ray", "--object-store-memory=200000000"],
                   check=True, capture_output=True, env=dict(os.environ, THYME_SCRATCH=str(work / "scratch")))
    config, store = prepare.PrepareConfig(shard_rows=shard_rows), LocalStore(work / "store")
    specs = prepare.plan(source, "2round", config)
    ray = engine("ray://127.0.0.1:10001" if client else "127.0.0.1:6391")
    # every worker started and thyme_core imported before the clock, as the local pool's forkserver preloads it
    ray.result([ray.submit(_warm, resources=Resources(cpus=1)) for _ in range(cores)][-1])
    for ref in [ray.submit(_warm, resources=Resources(cpus=1)) for _ in range(2 * cores)]:
        ray.result(ref)
    started = time.perf_counter()
    refs = [ray.submit(stored.prepare_step, s, store.uri, config, resources=Resources(cpus=1)) for s in specs]
    shards = [ray.result(r) for r in refs]
    run_wall = time.perf_counter() - started
    out = publish_shards(store, "sft", shards, DataHome(work / "driver-home"))
    publish_s = time.perf_counter() - started - run_wall
    images = sum(s.result.summary.images_seen for s in shards)
    return {**_figures(run_wall, len(specs), images), "publish_and_pull_s": round(publish_s, 2),
            "manifest": out.manifest}


def _warm() -> int:
    import thyme_core.cluster.stored  # noqa: F401  (and with it prepare, catalog, versions)
    import thyme_core.prepare.shards  # noqa: F401

    return os.getpid()


if __name__ == "__main__":
    main()
