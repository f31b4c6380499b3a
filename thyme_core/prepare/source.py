"""Thyme SFT and RL sources, read in shards with flat memory.

A source is a Parquet file in Hugging Face `datasets` layout, a JSONL file with the same fields, a folder
holding such files, or an s3://bucket/prefix of them (read in place by range: s3_source.py). Two schemas,
detected per file (`detect_schema`):
- SFT: `image` (list of base64 strings), `question`, `response`;
- RL (the released form): `messages` (list of {role, content}), `images` (or `image`: list of base64
  strings), `solution`, `question`.
A file with a `messages` or `solution` column (JSONL: key, in its first parseable records) is RL, any other
is SFT; then that schema's columns are checked, and a missing one is an error naming the file and columns. `plan_shards`
cuts each file into shards of about `shard_rows` rows (Parquet at row-group boundaries, JSONL at line
boundaries), and smaller when the file has fewer than MIN_SHARDS_PER_FILE * shard_rows rows, so that even a
file of a few thousand large rows gives every core of a worker several shards and none idles while the last
shard runs (a rule of the file alone, not of the machine's core count, so keys agree across machines). It
names each shard by a key derived from the file's content hash (an S3 object: its ETag and size), the split,
the row range, the preparation config and the code version: a rerun finds the same keys and skips finished work.

File-level problems (unreadable file, missing column, wrong column type) are ThymeError with the file and
column named; record-level problems are left to the caller to turn into reason codes.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.base.names import check_name
from thyme_core.prepare import hub_range, s3_source
from thyme_core.prepare.digests import cached_sha256

REQUIRED_COLUMNS = ("image", "question", "response")  # SFT
RL_COLUMNS = ("messages", "images", "solution", "question")  # `image` is accepted for `images`
RL_MARKERS = ("messages", "solution")  # a file with either is RL
JSONL_SNIFF_LINES = 100  # JSONL: keys of the first parseable records decide the schema
PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".json")
READ_BATCH_ROWS = 64  # rows decoded from Parquet at a time inside a row group
MIN_SHARDS_PER_FILE = 16  # when row groups allow: 8 per core on 2 cores, 2 per core on 8


@dataclass(frozen=True)
class ShardSpec:
    key: str
    split: str
    path: str  # absolute path of the source file, or its s3:// URI
    kind: str  # "parquet" or "jsonl"
    file_sha256: str
    row_start: int
    row_stop: int
    row_groups: tuple[int, ...] = ()  # parquet: the row groups covering [row_start, row_stop)
    byte_start: int = 0  # jsonl: byte range of the shard's lines
    byte_stop: int = 0
    schema: str = "sft"  # "sft" or "rl": the file's schema (detect_schema)
    display_name: str = ""  # source_file in the catalog ("" = the file name); hub files: their path in the repo,
    # S3 objects: their name under the prefix
    hub_base: str = ""  # hub files: "hf://datasets/OWNER/NAME@SHA/FOLDER", to fetch images named relative to it
    s3: s3_source.S3Object | None = None  # S3 objects (path is their s3:// URI): ETag, size and endpoint
    hub: hub_range.HubFile | None = None  # hub files read by range (path is hf://...@SHA/PATH): a cluster's


def list_source_files(source: str | Path) -> list[Path]:
    root = Path(source)
    if not root.exists():
        raise ThymeError(f"{root}: no such file or folder")
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES + JSONL_SUFFIXES)
        if not files:
            raise ThymeError(f"{root}: no .parquet or .jsonl files in this folder")
    for f in files:
        if f.suffix.lower() not in PARQUET_SUFFIXES + JSONL_SUFFIXES:
            raise ThymeError(f"{f}: unsupported file type (expected .parquet or .jsonl)")
    return files


def plan_shards(source: str | Path, split: str, shard_rows: int, salt: str,
                home: DataHome | None = None) -> list[ShardSpec]:
    """All shards of a source: a local file or folder, or s3://bucket/prefix (s3_source.py: read by range).
    `salt` (config hash + code version) goes into every shard key. With a home, local file hashes come from
    its digest cache when the files are unchanged (digests.py)."""
    check_name("split", split)
    if s3_source.is_remote(source):
        return [spec for obj in s3_source.list_objects(str(source)) for spec in _plan_s3(obj, split, shard_rows, salt)]
    specs: list[ShardSpec] = []
    for path in list_source_files(source):
        where, digest = str(path.absolute()), cached_sha256(path, home)
        if path.suffix.lower() in PARQUET_SUFFIXES:
            specs += _plan_parquet(where, path, split, shard_rows, digest, salt)
        else:
            specs += _plan_jsonl(where, lambda: open(path, "rb"), split, shard_rows, digest, salt)
    return specs


def _plan_s3(obj: s3_source.S3Object, split: str, shard_rows: int, salt: str) -> list[ShardSpec]:
    """An object's shards, keyed by its identity (ETag, size) and its name under the prefix."""
    salt, extra = f"{salt}:s3:{obj.name}", {"display_name": obj.name, "s3": obj}
    if obj.name.lower().endswith(PARQUET_SUFFIXES):
        return _plan_parquet(obj.uri, s3_source.open_binary(obj), split, shard_rows, obj.digest, salt, **extra)
    return _plan_jsonl(obj.uri, lambda: s3_source.open_binary(obj, buffered=True), split, shard_rows, obj.digest,
                       salt, **extra)


def plan_hub_file(f: hub_range.HubFile, split: str, shard_rows: int, salt: str) -> list[ShardSpec]:
    """A hub file's shards planned by range (its footer, or one pass over its lines): keyed by its content
    sha256 as a downloaded copy would be, read by range wherever they run."""
    from thyme_core.prepare import hub

    extra = {"display_name": f.name, "hub": f,
             "hub_base": hub.HubSnapshot(f.repo_id, f.sha, f.sha, ()).base(f.name)}
    if f.name.lower().endswith(PARQUET_SUFFIXES):
        return _plan_parquet(f.uri, hub_range.open_binary(f), split, shard_rows, f.digest, salt, **extra)
    return _plan_jsonl(f.uri, lambda: hub_range.open_binary(f, buffered=True), split, shard_rows, f.digest, salt,
                       **extra)


def shard_target_rows(total_rows: int, shard_rows: int) -> int:
    """Rows per shard for a file of total_rows: shard_rows, or less so the file makes MIN_SHARDS_PER_FILE.

    >>> shard_target_rows(3000, 1000), shard_target_rows(100_000, 1000), shard_target_rows(10, 1000)
    (188, 1000, 1)
    """
    return max(1, min(shard_rows, -(-total_rows // MIN_SHARDS_PER_FILE)))


def _shard_key(digest: str, split: str, start: int, stop: int, salt: str) -> str:
    text = f"{digest}\0{split}\0{start}\0{stop}\0{salt}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _open_parquet(where: str, source=None) -> pq.ParquetFile:
    """`where` (a path or an s3:// URI, for messages) as a ParquetFile read from `source` (default: the path):
    only the footer is read here."""
    try:
        pf = pq.ParquetFile(where if source is None else source)
    except (pa.ArrowException, OSError) as exc:
        raise ThymeError(f"{where}: not a readable Parquet file ({exc})") from None
    check_parquet_schema(where, pf.schema_arrow)
    return pf


def detect_schema(path: Path, names, required_image: bool = True) -> str:
    """The schema ("rl" or "sft") of a file with these column (or key) names; ThymeError naming the missing columns.

    JSONL records may leave out the image list (text-only), so there `required_image` is False.
    """
    names = set(names)
    if names & set(RL_MARKERS):
        wanted = [c for c in RL_COLUMNS if c != "images" or required_image]
        missing = [c for c in wanted if c not in names and not (c == "images" and "image" in names)]
        kind, expect = "rl", "RL columns: messages, images (or image), solution, question"
    else:
        wanted = [c for c in REQUIRED_COLUMNS if c != "image" or required_image]
        missing = [c for c in wanted if c not in names]
        kind, expect = "sft", ("SFT columns: image, question, response; "
                               "RL columns: messages, images (or image), solution, question")
    if missing:
        cols = ", ".join(f"'{c}'" for c in missing)
        raise ThymeError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {cols} "
                         f"(has: {', '.join(sorted(names)) or 'nothing'}; {expect})")
    return kind


def rl_image_column(names) -> str:
    return "images" if "images" in names else "image"


def check_parquet_schema(path: Path, schema: pa.Schema) -> str:
    """Check the columns of a Parquet file; returns its schema kind ("sft" or "rl")."""
    kind = detect_schema(path, schema.names)
    if kind == "rl":
        _check_rl_types(path, schema)
        return kind
    for col in ("question", "response"):
        if not _is_string(schema.field(col).type):
            raise ThymeError(f"{path}: column '{col}' has type {schema.field(col).type}, expected string")
    _check_image_list(path, schema, "image")
    return kind


def _check_image_list(path: Path, schema: pa.Schema, col: str) -> None:
    """An image column holds a list of image values (strings: base64, data URIs or paths; binary; HF `Image`
    structs {bytes, path}: images/values.py tells them apart per value), or one HF Image struct per row."""
    t = schema.field(col).type
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
    ok = (is_list and (_is_image_value(t.value_type) or pa.types.is_null(t.value_type))) or \
        (pa.types.is_struct(t) and _is_image_value(t))
    if not ok:
        raise ThymeError(f"{path}: column '{col}' has type {t}, expected a list of images (base64 strings, "
                         f"paths, binary or HF Image structs {{bytes, path}})")


def _is_image_value(t: pa.DataType) -> bool:
    if _is_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    return pa.types.is_struct(t) and {f.name for f in t} >= {"bytes", "path"}


def _check_rl_types(path: Path, schema: pa.Schema) -> None:
    for col in ("question", "solution"):
        if not _is_string(schema.field(col).type):
            raise ThymeError(f"{path}: column '{col}' has type {schema.field(col).type}, expected string")
    _check_image_list(path, schema, rl_image_column(schema.names))
    t = schema.field("messages").type
    ok = (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type)
    if not ok or not {"role", "content"} <= {f.name for f in t.value_type}:
        raise ThymeError(f"{path}: column 'messages' has type {t}, expected list<struct<role, content>>")


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _plan_parquet(where: str, source, split: str, shard_rows: int, digest: str, salt: str,
                  **extra) -> list[ShardSpec]:
    pf = _open_parquet(where, source)
    md, kind = pf.metadata, check_parquet_schema(where, pf.schema_arrow)
    shard_rows = shard_target_rows(md.num_rows, shard_rows)
    specs, groups, start, row = [], [], 0, 0
    for i in range(md.num_row_groups):
        groups.append(i)
        row += md.row_group(i).num_rows
        if row - start >= shard_rows or i == md.num_row_groups - 1:
            key = _shard_key(digest, split, start, row, salt)
            specs.append(ShardSpec(key, split, where, "parquet", digest, start, row, tuple(groups), schema=kind,
                                   **extra))
            groups, start = [], row
    return specs


def _plan_jsonl(where: str, open_file, split: str, shard_rows: int, digest: str, salt: str,
                **extra) -> list[ShardSpec]:
    """Shards of whole lines, from one pass over the file: the schema from the keys of its first
    JSONL_SNIFF_LINES lines (a file with no parseable record is taken as SFT: its lines then become
    bad_field rejects), and the byte offset after every non-blank line."""
    keys: set[str] = set()
    ends = array("q")  # byte offset after each non-blank line
    pos = 0
    with open_file() as f:
        for n, line in enumerate(f):
            pos += len(line)
            if line.strip():
                ends.append(pos)
            if n < JSONL_SNIFF_LINES:
                keys |= _record_keys(line)
    kind = detect_schema(where, keys, required_image=False) if keys else "sft"
    rows = len(ends)
    size = shard_target_rows(rows, shard_rows)
    specs, start_row, start_byte = [], 0, 0
    while start_row < rows:
        stop_row = min(start_row + size, rows)
        stop_byte = ends[stop_row - 1] if stop_row - start_row == size else pos  # a short last one: to the end
        key = _shard_key(digest, split, start_row, stop_row, salt)
        specs.append(ShardSpec(key, split, where, "jsonl", digest, start_row, stop_row, (), start_byte, stop_byte,
                               kind, **extra))
        start_row, start_byte = stop_row, stop_byte
    return specs


def _record_keys(line: bytes) -> set[str]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return set()
    return set(record) if isinstance(record, dict) else set()


def image_fetcher(spec: ShardSpec):
    """For a shard of a hub file or an S3 object: a function fetching an image named relative to the data file
    from the same place (the repo at the same commit, the object's folder); None for local files, whose
    images are on disk."""
    if spec.s3 is not None:
        return s3_source.relative_fetcher(spec.s3)
    if not spec.hub_base:
        return None
    from thyme_core.prepare import hub

    return hub.relative_fetcher(spec.hub_base, spec.hub.endpoint if spec.hub is not None else None)


def read_shard(spec: ShardSpec) -> Iterator[tuple[int, dict | str]]:
    """Yield (row number, record) for every row of the shard; a record that cannot be parsed is
    yielded as an error string so the caller can reject it with a reason."""
    if spec.kind == "parquet":
        yield from _read_parquet(spec)
    else:
        yield from _read_jsonl(spec)


def _open_binary(spec: ShardSpec, buffered: bool = True):
    if spec.s3 is not None:
        return s3_source.open_binary(spec.s3, buffered)
    if spec.hub is not None:
        return hub_range.open_binary(spec.hub, buffered)
    return open(spec.path, "rb")


def _read_parquet(spec: ShardSpec) -> Iterator[tuple[int, dict]]:
    # One row group in memory at a time (read_row_group is ~2.5x faster than iter_batches on large
    # base64 strings); Python objects are made for READ_BATCH_ROWS rows at a time. A local file is read by
    # pyarrow itself; from S3, the footer and then each of the shard's column chunks is one ranged GET.
    remote = _open_binary(spec, buffered=False) if spec.s3 is not None or spec.hub is not None else None
    pf = _open_parquet(spec.path, remote)
    columns = list(REQUIRED_COLUMNS)
    if spec.schema == "rl":
        image_col = rl_image_column(pf.schema_arrow.names)
        columns = [image_col if c == "images" else c for c in RL_COLUMNS]
    row = spec.row_start
    for group in spec.row_groups:
        try:
            table = pf.read_row_group(group, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise ThymeError(f"{spec.path}: row group {group} cannot be read ({exc})") from None
        for start in range(0, table.num_rows, READ_BATCH_ROWS):
            for record in table.slice(start, READ_BATCH_ROWS).to_pylist():
                yield row, record
                row += 1
        del table


def _read_jsonl(spec: ShardSpec) -> Iterator[tuple[int, dict | str]]:
    row = spec.row_start
    with _open_binary(spec) as f:
        f.seek(spec.byte_start)
        while f.tell() < spec.byte_stop:
            line = f.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    record = f"line is a JSON {type(record).__name__}, not an object"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                record = f"line is not valid JSON: {exc}"
            yield row, record
            row += 1
