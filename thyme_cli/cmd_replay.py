"""`thyme replay --split NAME`: re-run the prepared samples' code in the sandbox and compare outputs."""

from __future__ import annotations

from thyme_cli.main import add_cluster_args, add_home_arg, cluster_kwargs, warm_up


def register(sub) -> None:
    p = sub.add_parser("replay", help="verify that prepared samples' code reproduces their recorded outputs")
    p.add_argument("--split", required=True, help="the prepared split to replay")
    p.add_argument("--min-similarity", type=float, default=0.98, help="pixel similarity counted as a match")
    p.add_argument("--timeout", type=float, default=20.0, help="wall-clock seconds per code block")
    p.add_argument("--unsafe-no-isolation", action="store_true",
                   help="run code without bubblewrap (trusted data only: no network/file isolation)")
    add_cluster_args(p, "sft")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from tasks.runtime import shared_prefect_api

    with shared_prefect_api(meanwhile=warm_up(args.cluster) if args.cluster else None):
        from flows.replay_sft_data import replay_sft_data

        result = replay_sft_data(split=args.split, home=args.home, min_similarity=args.min_similarity,
                                 timeout_s=args.timeout, isolation="none" if args.unsafe_no_isolation else "bwrap",
                                 **cluster_kwargs(args))
    print(result["report"])
    return 0
