"""The executor: one function call per shard as a Ray task, placed by its declared resources.

`address(arg)` picks the cluster: an explicit address (`ray://HOST:PORT` through Ray Client, or `HOST:PORT` /
`auto` for a driver on a cluster node), else $THYME_RAY_ADDRESS, else None (the local warm pool, the default).
One connection per process, opened on first use and shared by every thread (the flow's shard tasks are
threads that each wait on their own Ray task).

Failures: a Ray task whose worker process or node dies is resubmitted by Ray on another worker
(`max_retries`); the step's outputs are content-addressed and its completion marker is written last, so a
half-done attempt only leaves objects the next attempt reuses. An exception raised by the step itself (bad
data: ThymeError) is not retried by Ray (`retry_exceptions=False`) and comes back as that ThymeError.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from thyme_core.base.errors import ThymeError

ADDRESS_ENV = "THYME_RAY_ADDRESS"


@dataclass(frozen=True)
class Resources:
    """What one shard task asks the cluster for (Ray places it on a node that has it free)."""

    cpus: float = 1.0
    gpus: float = 0.0
    max_retries: int = 3  # resubmissions after the worker process or its node died

    def __post_init__(self):
        if self.cpus < 0 or self.gpus < 0 or self.max_retries < 0:
            raise ValueError("cpus, gpus and max_retries must be >= 0")


def address(arg: str | None = None) -> str | None:
    """The cluster to use: the argument, else $THYME_RAY_ADDRESS, else None (run locally)."""
    return (arg or os.environ.get(ADDRESS_ENV) or "").strip() or None


class RayEngine:
    def __init__(self, address: str):
        try:
            import ray
        except ImportError:
            raise ThymeError("--cluster needs Ray: pip install 'thyme-pipeline[cluster]'") from None
        self.address = address
        self._ray = ray
        if not ray.is_initialized():
            try:
                # Workers' prints stay in the cluster's logs: the driver reports through Prefect.
                ray.init(address=address, log_to_driver=False)
            except Exception as exc:  # ConnectionError, grpc errors: all mean "no cluster there"
                raise ThymeError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        self._remote: dict[tuple, Any] = {}

    def resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def submit(self, fn: Callable, *args, resources: Resources = Resources()):
        """Start fn(*args) on the cluster; returns a Ray ObjectRef."""
        key = (fn, resources)
        if key not in self._remote:
            self._remote[key] = self._ray.remote(fn).options(
                num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=resources.max_retries,
                retry_exceptions=False, name=fn.__name__)
        return self._remote[key].remote(*args)

    def result(self, ref) -> Any:
        """Wait for one task; a ThymeError raised by the step comes back as a ThymeError."""
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ThymeError):
                raise ThymeError(str(cause)) from None
            raise

    def run(self, fn: Callable, *args, resources: Resources = Resources()) -> Any:
        return self.result(self.submit(fn, *args, resources=resources))


_lock = threading.Lock()
_engines: dict[str, RayEngine] = {}


def engine(address: str) -> RayEngine:
    """The process's connection to the cluster at `address` (one per process: Ray allows one)."""
    with _lock:
        if address not in _engines:
            if _engines:
                raise ThymeError(f"this process is already connected to the Ray cluster at {next(iter(_engines))}")
            _engines[address] = RayEngine(address)
        return _engines[address]
