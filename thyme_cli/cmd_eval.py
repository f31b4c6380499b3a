"""`thyme eval BENCH.tsv`: evaluate a VLMEvalKit TSV benchmark through the agent loop (flow `evaluate`)."""

from __future__ import annotations

from thyme_cli.cmd_infer import add_agent_args, agent_settings, backend_kwargs
from thyme_cli.main import add_home_arg


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a VLMEvalKit TSV benchmark (scores by benchmark and category)")
    p.add_argument("tsv", help="benchmark file in VLMEvalKit TSV form")
    p.add_argument("--shard-rows", type=int, default=32, help="rows per shard (the unit a re-run skips)")
    p.add_argument("--run-id", default="", help="run id (default: a hash of benchmark, model and settings)")
    add_agent_args(p)
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from tasks.runtime import shared_prefect_api

    with shared_prefect_api():
        from flows.evaluate import evaluate

        out = evaluate(tsv=args.tsv, home=args.home, shard_rows=args.shard_rows, run_id=args.run_id,
                       agent_settings=agent_settings(args), **backend_kwargs(args))
    print(out["report"])
    print(f"\nrun {out['run_id']}: {out['correct']}/{out['samples']} correct "
          f"({out['shards_reused']}/{out['shards']} shards already done)")
    return 0
