"""`thyme sandbox run`: execute one block of model code in the sandbox and print the result as JSON.

    thyme sandbox run --image photo.jpg --code crop.py [--home DIR] [--session ID] [--timeout S]

Output images are written to <home>/sandbox/<session>/ (from the bytes the sandbox read once), the paths the
JSON's `images` lists; `sandbox_paths` lists the paths the code used for them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from pathlib import Path

from thyme_cli.main import add_home_arg
from thyme_core.base.errors import ThymeError


def register(subparsers) -> None:
    parser = subparsers.add_parser("sandbox", help="run model-written code in the isolated sandbox")
    sub = parser.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="run one code block against an image; print the result as one JSON object")
    run.add_argument("--image", action="append", default=[], help="input image (image_path); repeatable")
    run.add_argument("--code", required=True, help="file with the code (text inside <code>, fences allowed); - for stdin")
    run.add_argument("--session", default=None, help="session id: names the output folder (default: a new one per call); "
                     "variables do not carry over between CLI calls, each call is a fresh interpreter")
    run.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds (default 10)")
    run.add_argument("--memory-mb", type=int, default=2048, help="memory limit above the warm interpreter")
    run.add_argument(
        "--unsafe-no-isolation", action="store_true",
        help="run without bubblewrap (no network/filesystem isolation): only for trusted code",
    )
    add_home_arg(run)
    run.set_defaults(handler=_run)
    check = sub.add_parser("check", help="print what this machine's sandbox enforces per session, as JSON")
    check.add_argument("--unsafe-no-isolation", action="store_true", help="check the unisolated mode")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from thyme_core.sandbox import SandboxPool

    isolation = "none" if args.unsafe_no_isolation else "bwrap"
    with SandboxPool(isolation=isolation, workers=1, spares=0) as pool:
        works = pool.run("print('ok')", session_id="check").stdout == "ok\n"
        report = {"isolation": isolation, "mode": pool.mode, "works": works, "per_session": pool.cgroups,
                  "uids": pool.uid_range}
    print(json.dumps(report))
    return 0 if works else 1


def _run(args: argparse.Namespace) -> int:
    from thyme_core.base.home import resolve_home
    from thyme_core.sandbox import Limits, SandboxPool

    code = sys.stdin.read() if args.code == "-" else _read(Path(args.code))
    limits = Limits(timeout_s=args.timeout, cpu_s=max(1, int(args.timeout)), memory_mb=args.memory_mb)
    session = args.session or uuid.uuid4().hex[:12]
    keep = resolve_home(args.home).root / "sandbox" / re.sub(r"[^A-Za-z0-9_.-]", "_", session)[:64]
    isolation = "none" if args.unsafe_no_isolation else "bwrap"
    with SandboxPool(isolation=isolation, workers=1, limits=limits, spares=0) as pool:
        result = pool.run(code, args.image, session_id=session)
    out = result.to_json_dict()
    out["sandbox_paths"], out["images"] = out["images"], []
    for i, image in enumerate(result.images):
        keep.mkdir(parents=True, exist_ok=True)
        path = keep / f"{i}_{os.path.basename(image.path)}"
        path.write_bytes(image.data)
        out["images"].append(str(path))
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ThymeError(f"cannot read code file {path}: {exc.strerror}") from None
