"""Synthetic RL data in the released Thyme RL form, derived from the synthetic SFT records.

Each SFT record (image, question, response; by default of the single-round split, `thyme synth --form rl`
takes any) becomes {messages, images, solution, question}: a system message,
the SFT question as the user turn (it starts with `<image>` and carries a `User Image Path:` line, as the
released prompts do), the original image only (processed images belong to a response, which RL has not),
the answer of the response (without `**`) as the solution, and the question text without the path lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from thyme_core.synth.generate import generate_records
from thyme_core.synth.writer import _staged, write_jsonl
from thyme_core.thyme_format import ANSWER_RE

SYSTEM_PROMPT = "You are a helpful assistant. Think, write code to inspect the image when it helps, then answer."
RL_SPLIT_FROM = "wo_thinking_thyme_single_round"  # the SFT split whose records are turned into RL prompts
RL_SCHEMA = pa.schema([
    pa.field("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    pa.field("images", pa.list_(pa.string())),
    pa.field("solution", pa.string()),
    pa.field("question", pa.string()),
])


def rl_record(sft: dict) -> dict:
    """One SFT record -> one RL record in the released form."""
    m = ANSWER_RE.search(sft["response"])
    solution = m.group("body").strip().strip("*").strip() if m else ""
    return {
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": sft["question"]}],
        "images": list(sft["image"][:1]),
        "solution": solution,
        "question": plain_question(sft["question"]),
    }


def plain_question(text: str) -> str:
    """The question without the `<image>` placeholder and from the first `User Image Path` line on."""
    lines = []
    for line in text.splitlines():
        if "User Image Path" in line:
            break
        if line.strip() != "<image>":
            lines.append(line)
    return "\n".join(lines).strip()


def generate_rl_records(n: int, seed: int = 0, width: int = 1000, height: int = 800,
                        split: str = RL_SPLIT_FROM) -> Iterator[dict]:
    for sft in generate_records(split, n, seed, width, height, workers=1):
        yield rl_record(sft)


def write_rl_dataset(path: Path, n: int, seed: int = 0, width: int = 1000, height: int = 800,
                     fmt: str | None = None, split: str = RL_SPLIT_FROM) -> int:
    """Write n RL records, from the SFT records of `split`, to `path` (Parquet, or JSONL for a .jsonl path or
    fmt="jsonl"); returns the count."""
    if n < 0:
        raise ValueError("n must be >= 0")
    path = Path(path)
    fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".json") else "parquet")
    rows = generate_rl_records(n, seed, width, height, split)
    if fmt == "jsonl":
        return write_jsonl(path, rows)
    if fmt != "parquet":
        raise ValueError(f"format must be parquet or jsonl, not {fmt!r}")
    return write_rl_parquet(path, rows)


def write_rl_parquet(path: Path, rows: Iterable[dict]) -> int:
    rows = list(rows)
    with _staged(Path(path)) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=RL_SCHEMA), tmp, compression="zstd")
    return len(rows)


__all__ = ["RL_SCHEMA", "generate_rl_records", "rl_record", "write_rl_dataset", "write_rl_parquet"]
