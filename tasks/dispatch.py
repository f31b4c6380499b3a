"""Running one pipeline stage: a run of the stage's deployment on its work pool, or the same flow in-process.

With a server that has the deployments registered, a stage is `run_deployment(...)`: a linked child run of
the pipeline's run (as_subflow), named after its stage, inputs and attempt, which the stage's pool's worker
picks up; the pipeline waits for it. A child that CRASHED (its worker or machine went away) is dispatched
again, up to `attempts` times: an infrastructure failure. A child that FAILED (its own error: bad data, a
bad parameter) fails the pipeline at once with the child's own message in one line. With no server or no
deployments (`thyme demo`, the CLI) the stage's flow is called in-process: the same flow, the same keys.
"""

from __future__ import annotations

import os

from thyme_core.base.errors import ThymeError

DEPLOYMENTS = {
    "prepare": "prepare_sft_data/prepare-sft-data",
    "replay": "replay_sft_data/replay-sft-data",
    "sft": "train_sft/train-sft",
    "rl": "train_rl/train-rl",
    "evaluate": "evaluate/evaluate",
}


def choose_mode(requested: str) -> str:
    """`deployments` when asked, or (auto) when PREFECT_API_URL names a server holding every stage's
    deployment; else `in-process`."""
    if requested != "auto":
        return requested
    if not os.environ.get("PREFECT_API_URL"):
        return "in-process"
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async def all_registered() -> bool:
        async with get_client() as client:
            for name in DEPLOYMENTS.values():
                try:
                    await client.read_deployment_by_name(name)
                except ObjectNotFound:
                    return False
        return True

    try:
        return "deployments" if asyncio.run(all_registered()) else "in-process"
    except RuntimeError:  # already inside an event loop: ask from a thread
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return "deployments" if pool.submit(asyncio.run, all_registered()).result() else "in-process"


def one_line(message: str | None) -> str:
    lines = [ln.strip() for ln in (message or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def start(stage: str, params: dict, run_name: str):
    """Create the child run of `stage` (linked to the calling flow run) without waiting; returns the FlowRun."""
    from prefect.deployments import run_deployment

    return run_deployment(DEPLOYMENTS[stage], parameters=params, flow_run_name=run_name, timeout=0,
                          as_subflow=True, tags=["thyme-stage", stage])


def wait(flow_run_id):
    import asyncio

    from prefect.flow_runs import wait_for_flow_run

    return asyncio.run(wait_for_flow_run(flow_run_id, timeout=None, log_states=False))


def dispatch(stage: str, params: dict, run_name: str, attempts: int = 2, nodes: int = 1) -> list[str]:
    """Run `stage` on its pool (nodes: that many child runs at once, `node_rank` 0..nodes-1, all of which
    must complete); returns the child run names. Raises ThymeError with the child's error on failure."""
    names = []
    for attempt in range(1, attempts + 1):
        suffix = f"-r{attempt}" if attempt > 1 else ""
        children = [start(stage, {**params, **({"node_rank": i} if nodes > 1 else {})},
                          f"{run_name}{f'-node{i}' if nodes > 1 else ''}{suffix}") for i in range(nodes)]
        names += [c.name for c in children]
        bad = None
        for child in children:
            state = wait(child.id).state
            if not state.is_completed():
                bad = (child, state)
                cancel([c.id for c in children if c is not child])  # no node left waiting for this one
                break
        if bad is None:
            return names
        if not (bad[1].is_crashed() and attempt < attempts):
            raise ThymeError(f"stage {stage}: child run {bad[0].name} {bad[1].type.value.lower()}: "
                             f"{one_line(bad[1].message)}")
    raise AssertionError("unreachable")


def cancel(flow_run_ids: list) -> None:
    """Cancel the runs among these that have not finished (a node whose peer failed)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    async def go():
        async with get_client() as client:
            for run_id in flow_run_ids:
                run = await client.read_flow_run(run_id)
                if run.state and not run.state.is_final():
                    await client.set_flow_run_state(run_id, Cancelling(), force=True)

    asyncio.run(go())
