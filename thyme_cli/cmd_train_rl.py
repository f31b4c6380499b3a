"""`thyme train-rl`: run the train_rl flow (GRPO-ATS with the sandbox in the rollout loop)."""

from __future__ import annotations

from thyme_cli.main import add_home_arg


def register(sub) -> None:
    p = sub.add_parser("train-rl", help="GRPO-ATS RL on the catalog's RL prompts (rl_samples, else sft_samples)")
    p.add_argument("--model", default=None, help="policy to train; default: the tiny offline Qwen2.5-VL")
    p.add_argument("--data", default=None, help="data split (default: every split with an image)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps in all (overrides the preset)")
    p.add_argument("--nproc", type=int, default=None, help="0: one process, no DeepSpeed; N: torchrun N ranks with "
                                                          "DeepSpeed (overrides the preset)")
    p.add_argument("--nnodes", type=int, default=1, help="nodes of the run (nproc >= 1): start this command on each, "
                                                        "with its --node-rank and the same --rdzv-id and --store")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank (0 publishes the rendezvous address)")
    p.add_argument("--rdzv-id", default="", help="names the multi-node run (the same on every node)")
    p.add_argument("--dataset", default="", help="dataset version NAME@HASH whose prompts to use (pulled into the "
                                                 "home) instead of the home's catalog; the weights become a model "
                                                 "version")
    p.add_argument("--store", default="", help="version store (default $THYME_STORE): datasets, models, "
                                               "checkpoints, the rendezvous address")
    p.add_argument("--preset", default=None, help="infra/presets/<name>.yaml or a path (default: rl, or rl_tiny "
                                                  "without --model)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set group_size=8; repeatable")
    p.add_argument("--system-prompt", default=None,
                   help="system prompt file (default infra/prompts/system.txt); same option as infer and eval")
    p.add_argument("--help-config", action="store_true", help="list every config field with its help and exit")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.help_config:
        from thyme_core.rl.config import help_text

        print(help_text())
        return 0
    from tasks.runtime import shared_prefect_api
    from thyme_cli.cmd_train_sft import parse_sets

    overrides = parse_sets(args.sets)
    if args.nproc is not None:
        overrides["nproc"] = args.nproc
    with shared_prefect_api():
        from flows.train_rl import train_rl

        result = train_rl(model=args.model, data=args.data, max_steps=args.max_steps, home=args.home,
                          preset=args.preset, overrides=overrides, dataset=args.dataset, store=args.store,
                          nnodes=args.nnodes, node_rank=args.node_rank, rdzv_id=args.rdzv_id,
                          system_prompt=args.system_prompt)
    steps = f"{result['steps']} steps" if "steps" in result else "already published"
    print(f"RL run {result['key']}: {steps}{' (skipped)' if result['skipped'] else ''}; "
          f"final weights: {result.get('model') or result.get('final')}")
    return 0
