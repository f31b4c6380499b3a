"""`thyme eval BENCH.tsv`: evaluate a VLMEvalKit TSV benchmark through the agent loop (flow `evaluate`)."""

from __future__ import annotations

from thyme_cli.cmd_infer import add_agent_args, agent_settings, backend_kwargs
from thyme_cli.main import add_cluster_args, add_home_arg, cluster_kwargs, warm_up


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a VLMEvalKit TSV benchmark (scores by benchmark and category)")
    p.add_argument("tsv", help="benchmark file in VLMEvalKit TSV form")
    p.add_argument("--shard-rows", type=int, default=32, help="rows per shard (the unit a re-run skips)")
    p.add_argument("--run-id", default="", help="run id (default: a hash of benchmark, model and settings)")
    p.add_argument("--protocol", choices=("thyme", "vlmevalkit"), default="thyme",
                   help="scoring: thyme (our matcher, default) or vlmevalkit (its rule stage, judge where its rules "
                        "decide nothing; regex only for MME-RealWorld), for numbers comparable with published ones")
    p.add_argument("--retries", type=int, default=0,
                   help="re-run a trajectory that ends without an answer up to N times (VLMEvalKit's retry; default 0)")
    p.add_argument("--judge-url", default="", help="vlmevalkit protocol: OpenAI-compatible judge base URL "
                   "(default THYME_JUDGE_URL; none: VLMEvalKit's exact-matching mode)")
    p.add_argument("--judge-model", default="", help="vlmevalkit protocol: the judge's served model name")
    add_agent_args(p)
    add_cluster_args(p, "eval")
    p.add_argument("--gpus-per-shard", type=float, default=1.0,
                   help="with --cluster: GPUs each shard holds, one backend per GPU (0 for CPU backends)")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from tasks.runtime import shared_prefect_api

    with shared_prefect_api(meanwhile=warm_up(args.cluster) if args.cluster else None):
        from flows.evaluate import evaluate

        out = evaluate(tsv=args.tsv, home=args.home, shard_rows=args.shard_rows, run_id=args.run_id,
                       protocol=args.protocol, retries=args.retries, judge_url=args.judge_url,
                       judge_model=args.judge_model, agent_settings=agent_settings(args),
                       gpus_per_shard=args.gpus_per_shard, **backend_kwargs(args), **cluster_kwargs(args))
    print(out["report"])
    print(f"\nrun {out['run_id']} ({out['protocol']} protocol): {out['correct']}/{out['samples']} correct "
          f"({out['shards_reused']}/{out['shards']} shards already done)")
    return 0
