"""Write synthetic Thyme rows in the Hugging Face `datasets` layout: Parquet (zstd, row groups) or JSONL.

Columns: `image` (list<string>, base64), `question` (string), `response` (string), as in the released
Thyme SFT data. Parquet is written one row group per `row_group_size` rows, streaming, so memory stays
flat; the schema carries the `huggingface` metadata `datasets` writes, so `load_dataset("parquet", ...)`
sees the same features. Both writers stage into a temporary file beside the target and rename it into
place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("parquet", "jsonl")
DEFAULT_ROW_GROUP_SIZE = 100
_HF_FEATURES = {
    "info": {
        "features": {
            "image": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
            "question": {"dtype": "string", "_type": "Value"},
            "response": {"dtype": "string", "_type": "Value"},
        }
    }
}
SCHEMA = pa.schema(
    [
        pa.field("image", pa.list_(pa.string())),
        pa.field("question", pa.string()),
        pa.field("response", pa.string()),
    ],
    metadata={"huggingface": json.dumps(_HF_FEATURES)},
)


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the published file gets the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def write_parquet(path: Path, rows: Iterable[dict], row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> int:
    """Write rows as zstd Parquet, one row group per `row_group_size` rows. Returns the row count."""
    if row_group_size <= 0:
        raise ValueError("row_group_size must be positive")
    count = 0
    with _staged(Path(path)) as tmp, pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for batch in _batches(rows, row_group_size):
            table = pa.Table.from_pylist(batch, schema=SCHEMA)
            writer.write_table(table, row_group_size=row_group_size)
            count += len(batch)
    return count


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines with the same fields. Returns the row count."""
    count = 0
    with _staged(Path(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
            count += 1
    return count


def write_rows(path: Path, rows: Iterable[dict], fmt: str = "parquet",
               row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> int:
    if fmt == "parquet":
        return write_parquet(path, rows, row_group_size)
    if fmt == "jsonl":
        return write_jsonl(path, rows)
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
