"""`thyme infer --image PATH --question TEXT`: one trajectory through the agent loop, printed and recorded."""

from __future__ import annotations

from thyme_cli.main import add_home_arg


def add_agent_args(p) -> None:
    """Options shared by infer and eval: backend, model and loop settings."""
    p.add_argument("--backend", default="transformers", choices=("transformers", "vllm", "openai", "scripted"),
                   help="generator (default transformers)")
    p.add_argument("--model", default="", help="checkpoint folder (default: the tiny offline model); "
                   "for --backend openai the server's base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--served-model", default="", help="openai backend: the model name the server serves")
    p.add_argument("--response-file", default="", help="scripted backend: a response text, or .jsonl per index")
    p.add_argument("--device", default="cpu", help="transformers backend device (cpu, cuda)")
    p.add_argument("--max-rounds", type=int, default=5, help="code executions per trajectory (default 5)")
    p.add_argument("--max-length", type=int, default=8192, help="token budget per trajectory (default 8192)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="tokens per generation call")
    p.add_argument("--text-temperature", type=float, default=0.0, help="temperature outside code (0 = greedy)")
    p.add_argument("--code-temperature", type=float, default=0.0, help="temperature inside <code>")
    p.add_argument("--system-prompt", default="", help="system prompt file (default infra/prompts/system.txt)")
    p.add_argument("--unsafe-no-isolation", action="store_true",
                   help="run model code without bubblewrap (trusted models only)")


def agent_kwargs(args) -> dict:
    return dict(backend=args.backend, model=args.model, response_file=args.response_file,
                served_model=args.served_model, device=args.device, max_rounds=args.max_rounds,
                max_length=args.max_length, max_new_tokens=args.max_new_tokens,
                text_temperature=args.text_temperature, code_temperature=args.code_temperature,
                system_prompt=args.system_prompt, isolation="none" if args.unsafe_no_isolation else "bwrap")


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

    kw = agent_kwargs(args)
    spec = BackendSpec(kw.pop("backend"), kw.pop("model"), kw.pop("response_file"), kw.pop("device"),
                       kw.pop("served_model"))
    traj, folder = infer(args.image, args.question, resolve_home(args.home), spec, AgentConfig(**kw),
                         run_id=args.run_id)
    print(describe(traj))
    print(f"\nrecorded: {folder}")
    return 0
