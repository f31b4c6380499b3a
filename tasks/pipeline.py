"""The pipeline's bookkeeping: per stage, compute its key, skip it when its result is recorded, else run it
(dispatched to its pool, or in-process), read back the versions it produced, and summarize the run.

The keys come from the same tasks the stage flows call on their own (tasks/stages.py, tasks/train.py, ...),
built from the same parameters with the flows' own defaults, so the pipeline and the stage agree on "done".
"""

from __future__ import annotations

import inspect

from prefect.artifacts import create_markdown_artifact

from tasks import dispatch
from tasks.evaluate import eval_stage_key
from tasks.stages import prepare_stage_key, replay_stage_key, stage_done
from tasks.train import sft_preset, sft_stage_key, sft_values
from tasks.train_rl import rl_stage_key, rl_values
from thyme_core.prepare.shards import PrepareConfig
from thyme_core.replay.verify import ReplayConfig


def _key(kind: str, store: str, a: dict) -> str | None:
    if kind == "prepare":
        return prepare_stage_key(a["source"], a["split"], PrepareConfig(shard_rows=a["shard_rows"],
                                 max_pixels=a["max_pixels"], verify=a["verify"]))
    if kind == "replay":
        return replay_stage_key(store, a["dataset"], a["split"], ReplayConfig(
            min_similarity=a["min_similarity"], timeout_s=a["timeout_s"], isolation=a["isolation"]))
    if kind == "sft":
        preset = sft_preset(a["stage"], a["model"], a["init_from"], a["preset"])
        values = sft_values(a["stage"], a["model"], a["max_steps"], a["init_from"], a["nnodes"], a["overrides"])
        return sft_stage_key(preset, values, a["dataset"], store)
    if kind == "rl":
        return rl_stage_key(a["preset"], rl_values(a["model"], a["data"], a["max_steps"], a["overrides"],
                                                   a["nnodes"]), a["dataset"], store)
    # the same parameters the evaluate flow hashes for its own key (it leaves out `cluster` too)
    params = {k: v for k, v in a.items() if k not in ("home", "store", "model", "tsv", "key", "cluster")}
    return eval_stage_key(store, a["tsv"], a["model"], params)


def _defaults(flow_obj) -> dict:
    return {n: p.default for n, p in inspect.signature(flow_obj.fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _result(record: dict) -> dict:
    return {**record.get("summary", {}), **record.get("outputs", {})}


class Stages:
    def __init__(self, home: str | None, store: str, mode: str):
        from prefect.runtime import flow_run

        from thyme_core.versions.store import default_store_uri

        self.home, self.store = home, store or default_store_uri()
        self.mode = dispatch.choose_mode(mode)
        self.attempt = flow_run.run_count or 1
        self.rows: list[dict] = []
        print(f"stages run {'on their pools (deployments)' if self.mode == 'deployments' else 'in this process'}")

    def stage(self, kind: str, flow_obj, label: str, **params) -> dict:
        args = {**_defaults(flow_obj), **params, "store": self.store}
        key = _key(kind, self.store, args)
        done = stage_done(self.store, key)
        name = f"{kind}-{label}" + (f"-{key[:8]}" if key else "") + f"-a{self.attempt}"
        if done:
            self._row(kind, label, "skipped", done.get("flow_run") or "", done["outputs"])
            return {**_result(done), "skipped": True}
        if self.mode == "in-process":
            result = flow_obj(**params, home=self.home, store=self.store)
            self._row(kind, label, "ran (in-process)", "", _outputs(result))
            return result
        children = dispatch.dispatch(kind, {**params, "store": self.store}, name,
                                     nodes=params.get("nnodes", 1) if kind in ("sft", "rl") else 1)
        record = stage_done(self.store, key) if key else self._ref(params)
        self._row(kind, label, "ran", ", ".join(children), record["outputs"])
        return {**_result(record), "children": children}

    def _ref(self, params: dict) -> dict:
        """A keyless stage (a remote source): the version its ref now names."""
        from thyme_core.versions import refs
        from thyme_core.versions.store import open_store

        ref, _ = refs.read(open_store(self.store), params["dataset"], params["dataset_tag"])
        return {"outputs": {"dataset": f"{params['dataset']}@{ref.manifest}"}}

    def _row(self, kind: str, label: str, what: str, run: str, outputs: dict) -> None:
        self.rows.append({"stage": kind, "label": label, "status": what, "run": run, "outputs": outputs})
        print(f"{kind} {label}: {what} {run} {outputs}")

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.publish_summary(failed=exc[0] is not None)

    def summary(self) -> dict:
        return {"mode": self.mode, "stages": self.rows}

    def publish_summary(self, failed: bool = False) -> None:
        """The parent run's summary artifact (also when a stage failed: what ran up to there)."""
        lines = [f"# thyme_pipeline (attempt {self.attempt}, {self.mode})", "",
                 "| stage | run | ran or skipped | versions produced |", "|---|---|---|---|"]
        for r in self.rows:
            versions = ", ".join(f"{k}: `{v}`" for k, v in r["outputs"].items()) or "-"
            lines.append(f"| {r['stage']} {r['label']} | {r['run'] or '-'} | {r['status']} | {versions} |")
        if failed:
            lines.append("\nA stage failed: the stages after it did not run.")
        create_markdown_artifact("\n".join(lines), key="thyme-pipeline", description="Stages of this run")


def _outputs(result: dict) -> dict:
    return {k: result[k] for k in ("dataset", "model") if k in result}
