"""Run inside a private network and PID namespace by test_ray_cluster.py (`unshare -n -p -f --kill-child
--mount-proc`): start a real two-node Ray cluster on 127.0.0.1, run the `thyme` CLI against it, write what
happened as JSON.

In the namespace loopback is the only interface, so every Ray node is 127.0.0.1 (on the host network Ray picks
the machine's address), and every process started here dies with the namespace when this script ends (or when
the test's timeout kills `unshare`: --kill-child). The CLI reports to a `prefect server` started here too (one
boot for the four runs). During the first prepare a watcher SIGKILLs one worker process while it runs a prepare
step (its title is `ray::prepare_step`): Ray must rerun that shard.

Then an s3:// source: a moto_server started here holds the files of `s3_folder` under `s3_uri`, the Ray nodes
know no S3 endpoint (only credentials, as an instance role would give), the driver has THYME_S3_ENDPOINT, so
the workers can only reach the server through the endpoint each task carries. moto's request log shows what
was read of the Parquet object.

Then an hf:// source: a fake Hub (tests/fakes.FakeHub) served here; only the driver has HF_ENDPOINT, so the
workers reach it through the endpoint each shard carries, and read the Parquet file by range at the planned
commit. And the evaluation's driver reads the benchmark, responses and model folder from a tmpfs mounted in a mount
namespace of its own, which no Ray node sees: they reach the workers through the store.

Usage: python ray_cluster_run.py PLAN.json  (keys: bin, repo, work, source, split, shard_rows, tsv, responses, model,
s3_folder, s3_uri, hub_folder, hub_sha)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HEAD_PORT, CLIENT_PORT = 6390, 10001  # the client port must lie outside the worker port range (10002-19999)
S3_PORT, HUB_PORT = 5123, 5124
HUB_VARS = ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_HOME")
S3_ENDPOINT_VARS = ("THYME_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def sh(*args, env, log: Path, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, args))}\n{out.stdout}\n{out.stderr}\n")
    if check and out.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({out.returncode}): {out.stderr[-3000:]}")
    return out


def start_node(bin_: Path, args: list, env: dict, log: Path, attempts: int = 3) -> None:
    """`ray start`, again if the node missed Ray's fixed 30 s start-up wait (a 2-core machine under load)."""
    for attempt in range(attempts):
        if sh(bin_ / "ray", "start", *args, env=env, log=log, check=attempt == attempts - 1).returncode == 0:
            return
        if "--head" in args:  # a half-started head would hold its ports: clear this namespace's Ray first
            sh(bin_ / "ray", "stop", "--force", env=env, log=log, check=False)


def kill_one_running(step: str, stop: threading.Event, killed: list) -> None:
    """SIGKILL the first process found running `step` (its Ray process title), then stop looking."""
    while not stop.is_set():
        for line in subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines():
            pid, _, args = line.strip().partition(" ")
            if args.startswith(f"ray::{step}"):
                os.kill(int(pid), signal.SIGKILL)
                killed.append({"pid": int(pid), "title": args})
                return
        time.sleep(0.02)


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    work, bin_ = Path(plan["work"]), Path(plan["bin"])
    log = work / "cluster.log"
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = dict(os.environ, PYTHONPATH=plan["repo"], RAY_USAGE_STATS_ENABLED="0", THYME_SCRATCH=str(work / "scratch"),
               PREFECT_HOME=str(work / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    for var in (*S3_ENDPOINT_VARS, *HUB_VARS):  # the nodes know no S3 endpoint, no Hub endpoint
        env.pop(var, None)
    env["HF_HUB_CACHE"] = str(work / "nodes-hf-cache")
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = subprocess.Popen([str(bin_ / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", "4210"],
                              env=env, stdout=open(work / "prefect.log", "w"), stderr=subprocess.STDOUT)
    tmp = Path(f"/tmp/rt{os.getpid()}")  # short: Ray's socket paths must fit in 107 bytes
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000"]
    start = lambda *a: start_node(bin_, [*a, *common], env, log)
    start("--head", f"--port={HEAD_PORT}", f"--ray-client-server-port={CLIENT_PORT}", "--include-dashboard=false",
          "--num-gpus=0", f"--temp-dir={tmp}")
    start(f"--address=127.0.0.1:{HEAD_PORT}", "--num-gpus=1")
    wait_healthy("http://127.0.0.1:4210/api", server)
    env["PREFECT_API_URL"] = "http://127.0.0.1:4210/api"
    cluster = ["--cluster", f"ray://127.0.0.1:{CLIENT_PORT}", "--store", str(work / "store")]
    thyme = lambda *a: sh(bin_ / "thyme", *a, *cluster, env=env, log=log)
    results: dict = {"killed": []}

    stop = threading.Event()
    watcher = threading.Thread(target=kill_one_running, args=("prepare_step", stop, results["killed"]), daemon=True)
    watcher.start()
    prep = ["prepare", plan["source"], "--split", plan["split"], "--shard-rows", plan["shard_rows"]]
    try:
        out = thyme(*prep, "--home", work / "home")
    finally:
        stop.set()
    results["prepare_stderr"] = out.stderr[-2000:]
    results["prepare_shard_lines"] = [line for line in out.stderr.splitlines() if "images/s on " in line]
    results["after_prepare"] = ref(work / "store", "sft")
    thyme("replay", "--split", plan["split"], "--unsafe-no-isolation", "--home", work / "home")
    results["after_replay"] = ref(work / "store", "sft")
    results.update(s3_prepare(plan, bin_, env, cluster[:2], log))
    results.update(hub_prepare(plan, bin_, env, cluster[:2], log))
    # The driver reads the benchmark, responses and model from a tmpfs in a mount namespace of its own: no node
    # sees them.
    private = work / "driver-only"
    private.mkdir()
    script = f'mount -t tmpfs none "{private}" && cp -r "$1" "$2" "$3" "{private}/" && shift 3 && exec "$@"'
    tsv, responses, model = (private / Path(plan[k]).name for k in ("tsv", "responses", "model"))
    out = sh("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", plan["tsv"], plan["responses"],
             plan["model"], bin_ / "thyme", "eval", tsv, "--backend", "scripted", "--response-file", responses,
             "--model", model, "--shard-rows", 3,
             "--unsafe-no-isolation", "--home", work / "eval-home", *cluster, env=env, log=log)
    results["driver_only_left"] = sorted(p.name for p in private.iterdir())  # empty: the tmpfs was the driver's
    results["eval_stdout"] = out.stdout[-2000:]
    results["eval_version"] = ref(work / "store", "eval")
    out = thyme(*prep, "--home", work / "home-again")  # everything is in the store: nothing runs on the cluster
    results["rerun_output"] = (out.stdout + out.stderr)[-6000:]  # the report comes through Prefect's log (stderr)
    results["after_rerun"] = ref(work / "store", "sft")
    sh(bin_ / "ray", "stop", "--force", env=env, log=log, check=False)  # only this PID namespace's processes
    (work / "results.json").write_text(json.dumps(results))


def s3_prepare(plan: dict, bin_: Path, env: dict, cluster: list, log: Path) -> dict:
    """Prepare plan["s3_uri"] (on a moto_server of this namespace) on the cluster: its version, and the Range
    header of every GET the server saw for the Parquet object `a.parquet` (None: a GET of the whole object)."""
    import boto3

    work, url = Path(plan["work"]), f"http://127.0.0.1:{S3_PORT}"
    requests = work / "moto-requests.jsonl"
    moto_env = dict(env, MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(requests))
    subprocess.Popen([str(bin_ / "moto_server"), "-H", "127.0.0.1", "-p", str(S3_PORT)], env=moto_env,
                     stdout=open(work / "moto.log", "w"), stderr=subprocess.STDOUT)
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    bucket, _, prefix = plan["s3_uri"].removeprefix("s3://").partition("/")
    for _ in range(100):
        try:
            client.create_bucket(Bucket=bucket)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    folder = Path(plan["s3_folder"])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())
    out = sh(bin_ / "thyme", "prepare", plan["s3_uri"], "--split", plan["split"], "--shard-rows", plan["shard_rows"],
             *cluster, "--store", work / "store-s3", "--home", work / "home-s3", env=dict(env, THYME_S3_ENDPOINT=url),
             log=log)
    key = f"/{bucket}/{prefix}/a.parquet"
    gets = [r["headers"].get("Range") for r in map(json.loads, requests.read_text().splitlines())
            if r["method"] == "GET" and r["url"].split("?")[0].endswith(key)]
    return {"after_s3_prepare": ref(work / "store-s3", "sft"), "s3_parquet_gets": gets,
            "s3_parquet_size": (folder / "a.parquet").stat().st_size, "s3_output": (out.stdout + out.stderr)[-3000:]}


def hub_prepare(plan: dict, bin_: Path, env: dict, cluster: list, log: Path) -> dict:
    """Prepare hf://datasets/<FakeHub.repo> (a fake Hub served here, files of plan["hub_folder"] at commit
    plan["hub_sha"]) on the cluster: only the driver knows HF_ENDPOINT. Its version, and the Range header of
    every GET of the Parquet file (None: the whole file)."""
    sys.path.insert(0, plan["repo"])
    from tests.fakes import FakeHub, serve_fake_hub

    work, folder = Path(plan["work"]), Path(plan["hub_folder"])
    httpd, url = serve_fake_hub(HUB_PORT)
    FakeHub.commits = {plan["hub_sha"]: {p.relative_to(folder).as_posix(): p.read_bytes()
                                         for p in folder.rglob("*") if p.is_file()}}
    FakeHub.refs = {"main": plan["hub_sha"]}
    driver = dict(env, HF_ENDPOINT=url, HF_HUB_CACHE=str(work / "driver-hf-cache"))
    try:
        out = sh(bin_ / "thyme", "prepare", f"hf://datasets/{FakeHub.repo}", "--split", plan["split"], "--shard-rows",
                 plan["shard_rows"], *cluster, "--store", work / "store-hub", "--home", work / "home-hub", env=driver,
                 log=log)
    finally:
        httpd.shutdown()
    gets = [r for m, p, _, r in FakeHub.log if m == "GET" and p.endswith("/data/train.parquet")]
    return {"after_hub_prepare": ref(work / "store-hub", "sft"), "hub_parquet_gets": gets,
            "hub_parquet_size": (folder / "data" / "train.parquet").stat().st_size,
            "hub_output": (out.stdout + out.stderr)[-3000:]}


def wait_healthy(url: str, server: subprocess.Popen, limit_s: float = 180) -> None:
    deadline = time.time() + limit_s
    while server.poll() is None and time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the prefect server in the namespace did not start")


def ref(store: Path, name: str) -> str:
    return json.loads((store / "refs" / name / "latest.json").read_text())["manifest"]


if __name__ == "__main__":
    main()
