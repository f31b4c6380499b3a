"""`thyme synth OUT --split NAME`: write a synthetic Thyme split in the Hugging Face `datasets` layout.

OUT is a file path (written atomically). The split name picks the sample family: the released names
(wo_thinking_thyme_single_round, 2round, computation), the family names (single_round, two_round), or `zoom`
(synth/zoom.py: a small coloured square in a 448x448 picture, the task bench/learn_cpu.py trains on).
`--form` picks what is written from those samples: Thyme SFT records (default), RL records in the released
form with their solutions, or (zoom only) a VLMEvalKit TSV benchmark.
"""

from __future__ import annotations

import argparse
import time

from thyme_cli.main import add_home_arg
from thyme_core.base.errors import ThymeError


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate a synthetic Thyme split (parquet or JSONL)")
    p.add_argument("out", metavar="OUT", help="output file path")
    p.add_argument("--split", required=True, help="wo_thinking_thyme_single_round, 2round, computation or zoom")
    p.add_argument("--form", choices=("sft", "rl", "bench"), default="sft",
                   help="sft: Thyme SFT records (default); rl: RL records (messages, images, solution, question); "
                        "bench: a VLMEvalKit TSV (zoom only)")
    p.add_argument("--n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--format", choices=("parquet", "jsonl"), default=None,
                   help="output format (default: from OUT's extension, else parquet)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same file (default 0)")
    p.add_argument("--size", default="1000x800", help="original image size WxH (default 1000x800; zoom: always 448x448)")
    p.add_argument("--row-group-size", type=int, default=100, help="parquet rows per row group (default 100)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    add_home_arg(p)
    p.set_defaults(handler=run)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ThymeError(f"--size must look like 1000x800, not {text!r}") from None
    if w < 64 or h < 64:
        raise ThymeError(f"--size must be at least 64x64, not {text!r}")
    return w, h


def run(args: argparse.Namespace) -> int:
    from thyme_core.synth import kind_of, write_dataset

    try:
        kind_of(args.split)
    except ValueError as exc:
        raise ThymeError(str(exc)) from None
    if args.n < 0 or args.row_group_size <= 0:
        raise ThymeError("--n must be >= 0 and --row-group-size > 0")
    width, height = parse_size(args.size)
    fmt = args.format or ("jsonl" if args.out.endswith((".jsonl", ".json")) else "parquet")
    start = time.perf_counter()
    if args.form == "bench":
        from thyme_core.synth.zoom import SPLIT, write_zoom_benchmark

        if kind_of(args.split) != SPLIT:
            raise ThymeError(f"--form bench is made for --split {SPLIT} only (its questions have lettered options)")
        write_zoom_benchmark(args.out, args.n, seed=args.seed)
        n, fmt = args.n, "tsv"
    elif args.form == "rl":
        from thyme_core.synth.rl import write_rl_dataset

        n = write_rl_dataset(args.out, args.n, seed=args.seed, width=width, height=height, fmt=fmt, split=args.split)
    else:
        n = write_dataset(args.out, args.split, args.n, seed=args.seed, width=width, height=height, fmt=fmt,
                          row_group_size=args.row_group_size, workers=args.workers)
    took = time.perf_counter() - start
    print(f"wrote {n} {args.split} samples to {args.out} ({args.form}, {fmt}) in {took:.1f} s "
          f"({n / max(took, 1e-9):.0f}/s)")
    return 0
