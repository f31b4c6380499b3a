"""Benchmarks in VLMEvalKit's TSV form (V*, HRBench-4K/8K, MME-RealWorld-Lite and friends).

Columns: `index`, `image` (base64), `question`, options `A`..`E` (only those present and non-empty count),
`answer` (a letter), `category`, optional `hint`. As in VLMEvalKit, an `image` cell that holds only digits
refers to the row with that index (benchmarks that ask several questions about one image store it once).
Files are streamed; a row range is read without holding the whole file.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from thyme_core.base.errors import ThymeError

OPTION_LETTERS = "ABCDEFGH"
REQUIRED = ("index", "image", "question", "answer")

csv.field_size_limit(sys.maxsize)  # base64 images are far larger than csv's default 128 KiB cell


@dataclass(frozen=True)
class BenchRow:
    index: str
    question: str
    options: dict[str, str] = field(default_factory=dict)
    answer: str = ""
    category: str = ""
    hint: str = ""
    image_b64: str = ""

    def prompt(self) -> str:
        """VLMEvalKit's multiple-choice prompt (hint, question, lettered options, instruction).

        >>> print(BenchRow("1", "What is on the sign?", {"A": "STOP", "B": "TAXI"}).prompt())
        Question: What is on the sign?
        Options:
        A. STOP
        B. TAXI
        Please select the correct answer from the options above.
        """
        lines = [f"Hint: {self.hint}"] if self.hint else []
        lines.append(f"Question: {self.question}")
        if self.options:
            lines.append("Options:")
            lines += [f"{k}. {v}" for k, v in self.options.items()]
            lines.append("Please select the correct answer from the options above.")
        return "\n".join(lines)


def benchmark_name(path: str | Path) -> str:
    return Path(path).stem


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rows(path: Path) -> Iterator[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")  # quoting as pandas writes it
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ThymeError(f"{path}: not a VLMEvalKit TSV (missing columns: {', '.join(missing)})")
        yield from reader


def _parse(raw: dict) -> BenchRow:
    options = {k: raw[k].strip() for k in OPTION_LETTERS
               if raw.get(k) is not None and raw[k].strip() and raw[k].strip().lower() != "nan"}
    hint = (raw.get("hint") or "").strip()
    return BenchRow(
        index=str(raw["index"]).strip(), question=raw["question"].strip(), options=options,
        answer=(raw.get("answer") or "").strip(), category=(raw.get("category") or "").strip(),
        hint="" if hint.lower() == "nan" else hint, image_b64=raw["image"].strip(),
    )


def count_rows(path: str | Path) -> int:
    return sum(1 for _ in _rows(Path(path)))


def read_rows(path: str | Path, start: int, stop: int) -> list[BenchRow]:
    """Rows [start, stop) in file order, image references resolved."""
    path = Path(path)
    rows = [_parse(r) for i, r in enumerate(_rows(path)) if start <= i < stop]
    refs = {r.image_b64 for r in rows if _is_ref(r.image_b64)}
    if refs:
        found = {str(r["index"]).strip(): r["image"].strip() for r in _rows(path)
                 if str(r["index"]).strip() in refs and not _is_ref(r["image"].strip())}
        missing = refs - set(found)
        if missing:
            raise ThymeError(f"{path}: image refers to missing row(s) {sorted(missing)[:5]}")
        rows = [r if not _is_ref(r.image_b64) else _with_image(r, found[r.image_b64]) for r in rows]
    return rows


def _is_ref(cell: str) -> bool:
    return cell.isdigit() and len(cell) < 64


def _with_image(row: BenchRow, b64: str) -> BenchRow:
    from dataclasses import replace

    return replace(row, image_b64=b64)


def write_tsv(path: str | Path, rows: list[BenchRow]) -> None:
    """Write rows in the same form (tests and the demo make small benchmarks with it)."""
    letters = [k for k in OPTION_LETTERS if any(k in r.options for r in rows)]
    columns = ["index", "image", "question", *letters, "answer", "category", "hint"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r.index, r.image_b64, r.question, *[r.options.get(k, "") for k in letters], r.answer,
                        r.category, r.hint])
