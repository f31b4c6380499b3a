"""`thyme infer --image PATH --question TEXT`: one trajectory through the agent loop, printed and recorded."""

from __future__ import annotations

import dataclasses

from thyme_cli.main import add_home_arg


def add_agent_args(p) -> None:
    """Options shared by infer and eval: backend and model, then one option per AgentConfig field (its help and
    default), so every loop and sampling setting is reachable without copying it here."""
    from thyme_core.agent.config import AgentConfig

    p.add_argument("--backend", default="transformers", choices=("transformers", "vllm", "openai", "scripted"),
                   help="generator (default transformers)")
    p.add_argument("--model", default="", help="checkpoint folder (default: the tiny offline model); eval: or a "
                   "model version NAME@HASH in --store; for --backend openai the server's base URL, e.g. "
                   "http://127.0.0.1:8000/v1")
    p.add_argument("--served-model", default="", help="openai backend: the model name the server serves")
    p.add_argument("--response-file", default="", help="scripted backend: a response text, or .jsonl per index")
    p.add_argument("--device", default="cpu", help="transformers backend device (cpu, cuda)")
    loop = p.add_argument_group("agent loop (AgentConfig)")
    for f in dataclasses.fields(AgentConfig):
        if f.name == "isolation":  # only ever turned off, by a flag that says what that means
            continue
        loop.add_argument(f"--{f.name.replace('_', '-')}", dest=f"agent_{f.name}", type=type(f.default),
                          default=f.default, help=f"{f.metadata['help']} (default {f.default!r})")
    loop.add_argument("--unsafe-no-isolation", action="store_true",
                      help="run model code without bubblewrap (trusted models only)")


def agent_settings(args) -> dict:
    """The AgentConfig fields given on the command line, by name."""
    from thyme_core.agent.config import AgentConfig

    out = {f.name: getattr(args, f"agent_{f.name}") for f in dataclasses.fields(AgentConfig) if f.name != "isolation"}
    return out | {"isolation": "none" if args.unsafe_no_isolation else "bwrap"}


def backend_kwargs(args) -> dict:
    return dict(backend=args.backend, model=args.model, response_file=args.response_file,
                served_model=args.served_model, device=args.device)


def register(sub) -> None:
    p = sub.add_parser("infer", help="answer one question about one image with the agent loop")
    p.add_argument("--image", required=True, help="the input image")
    p.add_argument("--question", required=True, help="the question")
    p.add_argument("--run-id", default="infer", help="run id the trajectory is recorded under")
    add_agent_args(p)
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from thyme_core.agent.config import AgentConfig
    from thyme_core.agent.infer import BackendSpec, describe, infer
    from thyme_core.base.home import resolve_home

    spec = BackendSpec(args.backend, args.model, args.response_file, args.device, args.served_model)
    traj, folder = infer(args.image, args.question, resolve_home(args.home), spec, AgentConfig(**agent_settings(args)),
                         run_id=args.run_id)
    print(describe(traj))
    print(f"\nrecorded: {folder}")
    return 0
