"""Benchmarks in VLMEvalKit's TSV form (V*, HRBench-4K/8K, MME-RealWorld-Lite and friends).

Columns: `index`, `image` (base64), `question`, options `A`..`E` (only those present and non-empty count),
`answer` (a letter), `category`, optional `hint`. As in VLMEvalKit, an `image` cell that holds only digits
refers to the row with that index (benchmarks that ask several questions about one image store it once).
Files are streamed; a row range is read without holding the whole file.

Benchmark-specific columns kept as VLMEvalKit ships them:
- `multi-choice options` (MME-RealWorld-Lite): a Python list literal of "(A) text" strings (or VLMEvalKit's
  rewritten "The choices are listed below:" block); parsed into options A-E when the row has no A-E columns,
  and the prompt is built as VLMEvalKit builds it for MME-RealWorld (question, choices, its instruction);
- `cycle_category` (HRBench: accuracy is averaged over cycles) and `l2-category` (MME-RealWorld), carried into
  eval_results for the eval_accuracy report.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from thyme_core.base.errors import ThymeError

OPTION_LETTERS = "ABCDEFGH"
REQUIRED = ("index", "image", "question", "answer")
MULTI_CHOICE = "multi-choice options"
CHOICES_HEADER = "The choices are listed below:"
MME_REALWORLD_INSTRUCTION = ("Select the best answer to the above multiple-choice question based on the image. "
                             "Respond with only the letter (A, B, C, D, or E) of the correct option. \n"
                             "The best answer is:")
_CHOICE = re.compile(r"^\s*\(([A-H])\)\s?(.*)$", re.S)

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
    cycle_category: str = ""  # HRBench
    l2_category: str = ""  # MME-RealWorld
    choices_block: str = ""  # MME-RealWorld: "The choices are listed below:\n(A) ...", shown as VLMEvalKit does

    def prompt(self) -> str:
        """VLMEvalKit's multiple-choice prompt (hint, question, lettered options, instruction).

        >>> print(BenchRow("1", "What is on the sign?", {"A": "STOP", "B": "TAXI"}).prompt())
        Question: What is on the sign?
        Options:
        A. STOP
        B. TAXI
        Please select the correct answer from the options above.
        """
        if self.choices_block:  # VLMEvalKit's MME-RealWorld prompt
            return f"{self.question} {self.choices_block}\n{MME_REALWORLD_INSTRUCTION}"
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


def _cell(raw: dict, key: str) -> str:
    value = (raw.get(key) or "").strip()
    return "" if value.lower() == "nan" else value


def parse_multi_choice(cell: str) -> dict[str, str]:
    """Options from a `multi-choice options` cell: a list literal of "(A) text" strings, or the block
    "The choices are listed below:\n(A) text\n..." VLMEvalKit writes back.

    >>> parse_multi_choice("['(A) 12', '(B) 15', '(C) 20']")
    {'A': '12', 'B': '15', 'C': '20'}
    >>> parse_multi_choice(CHOICES_HEADER + chr(10) + "(A) red" + chr(10) + "(B) blue")
    {'A': 'red', 'B': 'blue'}
    """
    cell = cell.strip()
    items: list = []
    if cell.startswith("["):
        try:
            items = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            items = []
    if not isinstance(items, list) or not items:
        items = [line for line in cell.removeprefix(CHOICES_HEADER).splitlines() if line.strip()]
    options = {}
    for item in items:
        m = _CHOICE.match(str(item))
        if m:
            options[m.group(1)] = m.group(2).strip()
    return options


def _parse(raw: dict) -> BenchRow:
    options = {k: _cell(raw, k) for k in OPTION_LETTERS if _cell(raw, k)}
    block = ""
    multi = _cell(raw, MULTI_CHOICE)
    if multi:
        parsed = parse_multi_choice(multi)
        options = options or parsed
        block = CHOICES_HEADER + "\n" + "\n".join(f"({k}) {v}" for k, v in parsed.items()) if parsed else ""
    return BenchRow(
        index=str(raw["index"]).strip(), question=raw["question"].strip(), options=options,
        answer=_cell(raw, "answer"), category=_cell(raw, "category"), hint=_cell(raw, "hint"),
        image_b64=raw["image"].strip(), cycle_category=_cell(raw, "cycle_category"),
        l2_category=_cell(raw, "l2-category"), choices_block=block,
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


def write_tsv(path: str | Path, rows: list[BenchRow], multi_choice: bool = False) -> None:
    """Write rows in the same form (tests and the demo make small benchmarks with it). `multi_choice`: options
    in one `multi-choice options` column, as MME-RealWorld-Lite ships them, instead of A-E columns."""
    letters = [] if multi_choice else [k for k in OPTION_LETTERS if any(k in r.options for r in rows)]
    extra = [MULTI_CHOICE] if multi_choice else []
    columns = ["index", "image", "question", *letters, *extra, "answer", "category", "hint", "cycle_category",
               "l2-category"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            multi = [repr([f"({k}) {v}" for k, v in r.options.items()])] if multi_choice else []
            w.writerow([r.index, r.image_b64, r.question, *[r.options.get(k, "") for k in letters], *multi,
                        r.answer, r.category, r.hint, r.cycle_category, r.l2_category])
