"""`thyme train-sft --stage 1|2`: run the train_sft flow (torchrun + DeepSpeed in a subprocess)."""

from __future__ import annotations

from thyme_cli.main import add_home_arg


def register(sub) -> None:
    p = sub.add_parser("train-sft", help="SFT stage 1 (image data) or stage 2 (annealing) on the catalog")
    p.add_argument("--stage", type=int, choices=[1, 2], default=1, help="1: image SFT; 2: annealing (default 1)")
    p.add_argument("--model", default=None,
                   help="model folder to fine-tune (stage 1); default: the tiny offline Qwen2.5-VL in the home")
    p.add_argument("--init-from", default=None, help="stage 2: start from these weights instead of stage 1's")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    p.add_argument("--preset", default=None,
                   help="infra/presets/<name>.yaml or a path (default: sft_stage<N>, or sft_tiny_stage<N> "
                        "without --model)")
    p.add_argument("--nproc", type=int, default=None, help="processes / GPUs per node (overrides the preset)")
    p.add_argument("--nnodes", type=int, default=1, help="nodes of the run: start this command on each, with "
                                                        "its --node-rank and the same --rdzv-id and --store")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank (0 publishes the rendezvous address)")
    p.add_argument("--rdzv-id", default="", help="names the multi-node run (the same on every node)")
    p.add_argument("--dataset", default="", help="dataset version NAME@HASH to train on (pulled into the home) "
                                                 "instead of the home's catalog; the weights become a model version")
    p.add_argument("--store", default="", help="version store (default $THYME_STORE): datasets, models, "
                                               "checkpoints, the rendezvous address")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (YAML value), e.g. --set learning_rate=2e-5; repeatable")
    p.add_argument("--system-prompt", default=None,
                   help="system prompt file (default infra/prompts/system.txt); same option as infer and eval")
    p.add_argument("--help-config", action="store_true", help="list every config field with its help and exit")
    add_home_arg(p)
    p.set_defaults(handler=run)


def parse_sets(items: list[str]) -> dict:
    import yaml

    from thyme_core.base.errors import ThymeError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ThymeError(f"--set takes KEY=VALUE, not {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args) -> int:
    if args.help_config:
        from thyme_core.sft.config import help_text

        print(help_text())
        return 0
    overrides = parse_sets(args.sets)
    if args.nproc:
        overrides["nproc"] = args.nproc
    from tasks.runtime import shared_prefect_api

    with shared_prefect_api():
        from flows.train_sft import train_sft

        result = train_sft(stage=args.stage, model=args.model, max_steps=args.max_steps, home=args.home,
                           preset=args.preset, init_from=args.init_from, overrides=overrides,
                           dataset=args.dataset, store=args.store, nnodes=args.nnodes, node_rank=args.node_rank,
                           rdzv_id=args.rdzv_id, system_prompt=args.system_prompt)
    print(f"final weights: {result.get('model') or result.get('final')}")
    return 0
