"""`thyme demo`: the main job on the embedded default, end to end on a CPU machine.

Generates a small synthetic Thyme dataset (the three released splits) plus a file of damaged records,
prepares it (prepare_sft_data; against the local API of `thyme server start` when it runs, as `make demo`
arranges, else one temporary API for the whole demo), replays every code
block in the sandbox (replay_sft_data), trains a few SFT steps of both stages on the tiny offline model
(train_sft), evaluates a tiny benchmark through the agent loop (evaluate), publishes a dataset version to a
local store, then shows the catalog through named queries. Idempotent: a second run reuses every finished
stage and pushes no new version.
"""

from __future__ import annotations

from pathlib import Path

from thyme_cli.main import add_home_arg

DEMO_SPLITS = {"wo_thinking_thyme_single_round": 48, "2round": 24, "computation": 32}
DEMO_QUERIES = ("counts_by_split", "code_rounds", "images_by_format", "rejects_by_reason", "prepare_runs",
                "replay_summary", "replay_failures", "eval_accuracy", "exec_success_by_round", "rl_reward_by_step",
                "rl_code_use_by_step")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on a small synthetic dataset (the embedded default)")
    p.add_argument("--size", default="640x480", help="original image size WxH (default 640x480)")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from flows.prepare_sft_data import prepare_sft_data
    from tasks.runtime import shared_prefect_api
    from thyme_core import catalog
    from thyme_core.base.home import resolve_home
    from thyme_core.synth import write_dataset

    home = resolve_home(args.home).ensure()
    width, height = (int(v) for v in args.size.lower().split("x"))
    sources = home.root / "sources"
    files = {}
    for split, n in DEMO_SPLITS.items():
        files[split] = sources / f"{split}.parquet"
        if not files[split].exists():
            print(f"generating {n} synthetic {split} samples -> {files[split]}")
            write_dataset(Path(files[split]), split, n, seed=0, width=width, height=height, row_group_size=16)
    messy = sources / "messy" / "single_round_messy.jsonl"
    if not messy.exists():
        _write_messy(messy, files["wo_thinking_thyme_single_round"])
    from thyme_core.base import workers

    with shared_prefect_api(meanwhile=workers.warm):
        for split, path in files.items():
            prepare_sft_data(source=str(path), split=split, home=str(home.root), shard_rows=16)
        # the same split again from a second, damaged source: every bad record gets its reason code
        prepare_sft_data(source=str(messy.parent), split="wo_thinking_thyme_single_round", home=str(home.root))
        from flows.replay_sft_data import replay_sft_data

        for split in files:  # re-run every code block in the sandbox; the damaged file's swapped images show
            replay_sft_data(split=split, home=str(home.root))
        # SFT (issue 6): a few steps of stage 1 then stage 2 (from stage 1's weights) on the tiny offline
        # Qwen2.5-VL: torchrun + DeepSpeed ZeRO-2 in a subprocess; a rerun with nothing changed is skipped
        from flows.train_sft import train_sft

        for stage in (1, 2):
            train_sft(stage=stage, max_steps=4, home=str(home.root))

        # RL (issue 7): two GRPO-ATS steps of the random tiny model (rl_tiny preset: one torchrun rank,
        # DeepSpeed ZeRO-3 on CPU, a rollout engine synced after each update; prompts derived from
        # sft_samples when there is no RL data): it writes no code, so rewards are 0 and groups zero-variance,
        # which is what the queries below show; a rerun with nothing changed is skipped
        from flows.train_rl import train_rl

        train_rl(max_steps=2, home=str(home.root))

        # Evaluation (issue 4): `thyme eval` of a tiny generated benchmark through the agent loop and the
        # sandbox, answered by recorded responses (scripted backend); a rerun skips the finished shards
        from flows.evaluate import evaluate
        from thyme_core.synth.benchmark import write_demo_benchmark

        bench, responses = write_demo_benchmark(sources / "bench", n=8)
        evaluate(tsv=str(bench), home=str(home.root), backend="scripted", response_file=str(responses), shard_rows=4)

    # Dataset versions (issue 5): publish the catalog as an immutable version in a local store (an s3://
    # URI works the same); a second demo run with nothing changed uploads nothing
    from thyme_core.versions.push import push
    from thyme_core.versions.store import open_store

    store_uri = str(home.root.parent / f"{home.root.name}-store")
    version = push(home, open_store(store_uri), "demo")
    print(f"\ndataset version demo@latest = {version.manifest[:16]} in {store_uri} "
          f"({version.objects} objects, {version.uploaded} uploaded{', unchanged' if version.unchanged else ''})")
    for name in DEMO_QUERIES:
        columns, rows = catalog.named(home, name)
        print(f"\n-- sql/queries/{name}.sql\n{catalog.format_table(columns, rows)}")
    print(f"\nData home: {home.root}\nTry: thyme sql \"SELECT split, count(*) FROM sft_samples GROUP BY split\" --home {home.root}")
    return 0


def _write_messy(path: Path, clean_parquet: Path) -> None:
    """A JSONL file of damaged records (one per kind synth.bad knows) plus two clean duplicates."""
    import json

    import pyarrow.parquet as pq

    from thyme_core.base.fsio import atomic_write_bytes
    from thyme_core.synth import bad

    rows = pq.read_table(clean_parquet).slice(0, 8).to_pylist()
    base = next(r for r in rows if len(r["image"]) > 1)
    records = [bad.with_image(base, payload, index=1) for payload in bad.bad_images()]
    records += [problem.record for problem in bad.bad_records(base)]
    records += rows[:2]  # already prepared from the clean file: reported as duplicates
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())
