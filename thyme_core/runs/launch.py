"""Launching a run's ranks with torchrun, on one node or several, and reading their METRICS lines.

One node: `--standalone`-like, a free local port. Several nodes: every node runs the same command with
`--nnodes N --node-rank i` and a static rendezvous at node 0's address (global ranks follow the node rank,
so node 0 holds rank 0: the run's records, final weights and DONE); a node that never arrives makes the
others fail after `rdzv_timeout` seconds, so no node is left waiting for ever.
Ranks speak one protocol (metrics.say): lines `METRICS {json}` are parsed, the rest passed on as text.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from thyme_core.runs import metrics
from thyme_core.runs.config import REPO


@dataclass(frozen=True)
class Nodes:
    """Where this process sits in a multi-node run (nnodes 1: a single local node)."""

    nnodes: int = 1
    node_rank: int = 0
    endpoint: str = ""  # host:port of node 0's rendezvous (nnodes > 1)
    rdzv_timeout: int = 120  # seconds every node waits for the others to join
    run_id: str = "thyme"
    finished: bool = False  # node 0's run is already done: nothing to start (rendezvous.meet)

    def __post_init__(self):
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} of nnodes {self.nnodes}")
        if self.nnodes > 1 and not self.endpoint:
            raise ValueError("a multi-node run needs node 0's rendezvous endpoint (host:port)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def torchrun_command(module: str, run_dir: Path, nproc: int, nodes: Nodes = Nodes()) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nodes.nnodes == 1:
        cmd += ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    else:
        # static rendezvous: node i's ranks are i*nproc.. (c10d would number nodes by the sort order of their
        # host names and pids, so "node 0" would hold rank 0 only by chance); node 0 hosts the store at its
        # published endpoint and waits `rdzv_timeout` s for the others, which retry as long
        cmd += [f"--nnodes={nodes.nnodes}", f"--node_rank={nodes.node_rank}", "--rdzv_backend=static",
                f"--rdzv_endpoint={nodes.endpoint}", f"--rdzv_id={nodes.run_id}",
                f"--rdzv_conf=timeout={nodes.rdzv_timeout}", "--max_restarts=0"]
    return cmd + ["-m", module, str(run_dir)]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu" if not env.get("CUDA_VISIBLE_DEVICES") else "cuda")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.setdefault("OMP_NUM_THREADS", "1")
    # the ranks' lines go to the run log: no weight-loading progress bars, no torch deprecation notices
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_torchrun(module: str, run_dir: Path, nproc: int, on_line: Callable[[str], None],
                 on_metrics: Callable[[dict], None], nodes: Nodes = Nodes()) -> int:
    """`torchrun -m module RUN_DIR`: METRICS lines go to on_metrics, the rest to on_line; returns the exit code."""
    proc = subprocess.Popen(torchrun_command(module, run_dir, nproc, nodes), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment(), cwd=REPO, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        record = metrics.parse(line)
        if record is not None:
            on_metrics(record)
        else:
            on_line(line)
    return proc.wait()
