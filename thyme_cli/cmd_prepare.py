"""`thyme prepare SOURCE --split NAME`: run the prepare_sft_data flow."""

from __future__ import annotations

from thyme_cli.main import add_home_arg, positive_int


def register(sub) -> None:
    p = sub.add_parser("prepare", help="prepare Thyme SFT or RL-form data (Parquet/JSONL) into the catalog")
    p.add_argument("source", help="a Thyme SFT (image, question, response) or RL (messages, images, solution, question) "
                                  ".parquet or .jsonl file, a folder of them, or s3://bucket/prefix")
    p.add_argument("--split", required=True, help="split name, e.g. wo_thinking_thyme_single_round, 2round, computation")
    p.add_argument("--shard-rows", type=positive_int, default=1000,
                   help="most source rows per shard / Prefect task (whole Parquet row groups; default 1000)")
    p.add_argument("--max-pixels", type=positive_int, default=100_000_000, help="decompression-bomb limit in pixels (default 100M)")
    p.add_argument("--verify", choices=["structure", "decode"], default="structure",
                   help="JPEG check: header + end marker (default) or a scaled decode of every image")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from tasks.runtime import shared_prefect_api
    from thyme_core.base import workers

    with shared_prefect_api(meanwhile=workers.warm):
        from flows.prepare_sft_data import prepare_sft_data

        result = prepare_sft_data(
            source=args.source, split=args.split, home=args.home,
            shard_rows=args.shard_rows, max_pixels=args.max_pixels, verify=args.verify,
        )
    print(result["report"])
    return 0
