"""`thyme prepare SOURCE --split NAME`: run the prepare_sft_data flow."""

from __future__ import annotations

import threading

from thyme_cli.main import add_cluster_args, add_home_arg, cluster_kwargs, positive_int, warm_up


def register(sub) -> None:
    p = sub.add_parser("prepare", help="prepare Thyme SFT or RL-form data (Parquet/JSONL) into the catalog")
    p.add_argument("source", help="a Thyme SFT (image, question, response) or RL (messages, images, solution, question) "
                                  ".parquet or .jsonl file, a folder of them, s3://bucket/prefix (read in place, by "
                                  "range), or a Hub dataset "
                                  "hf://datasets/OWNER/NAME[@REVISION][/PATH] (HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE "
                                  "honoured); images as base64, paths (relative to the data file), file:// URIs or "
                                  "HF Image structs")
    p.add_argument("--split", required=True, help="split name, e.g. wo_thinking_thyme_single_round, 2round, computation")
    p.add_argument("--shard-rows", type=positive_int, default=1000,
                   help="most source rows per shard / Prefect task (whole Parquet row groups; default 1000)")
    p.add_argument("--max-pixels", type=positive_int, default=100_000_000, help="decompression-bomb limit in pixels (default 100M)")
    p.add_argument("--verify", choices=["structure", "decode"], default="structure",
                   help="JPEG check: header + end marker (default) or a scaled decode of every image")
    add_cluster_args(p, "sft")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from tasks.runtime import shared_prefect_api

    with shared_prefect_api(meanwhile=_meanwhile(args)):
        from flows.prepare_sft_data import prepare_sft_data

        result = prepare_sft_data(
            source=args.source, split=args.split, home=args.home,
            shard_rows=args.shard_rows, max_pixels=args.max_pixels, verify=args.verify, **cluster_kwargs(args),
        )
    print(result["report"])
    return 0


def _meanwhile(args):
    """While Prefect is imported and its API found or booted: warm the worker pool and, for a local source,
    hash its files into the home's digest cache on the other core (the flow's plan then finds them there)."""
    pool = warm_up(args.cluster)
    from thyme_core.cluster.engine import address
    from thyme_core.prepare import hub
    from thyme_core.prepare.s3_source import is_remote

    if address(args.cluster) or is_remote(args.source) or hub.is_hub(args.source):
        return pool

    def both():
        threading.Thread(target=_hash_sources, args=(args.source, args.home), name="thyme-digests",
                         daemon=True).start()
        pool()

    return both


def _hash_sources(source: str, home: str | None) -> None:
    from thyme_core.base.errors import ThymeError
    from thyme_core.base.home import resolve_home
    from thyme_core.prepare import digests
    from thyme_core.prepare.source import list_source_files

    try:
        digests.warm(list_source_files(source), resolve_home(home))
    except ThymeError:
        pass  # (a bad path or file: the flow reports it)
