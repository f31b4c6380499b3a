"""`thyme prepare s3://bucket/prefix` reads the objects in place, by range (prepare/s3_source.py), against a
real moto_server: the catalog is the one the same folder on disk gives (images named by relative path read
from S3 too); a shard asks the server for its footer and its own row groups only (moto's request log);
unchanged objects' shards are skipped on a rerun; a missing, truncated or rewritten object is a clear error."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fakes import source_with_image_files, upload_folder
from tests.integration.conftest import BUCKET, recorded, thyme
from thyme_core import catalog, prepare
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA

SPLIT = "2round"
CONFIG = prepare.PrepareConfig(shard_rows=4)
# What must agree between a prepare from S3 and from disk (shard keys and source_file differ by design:
# an S3 object is keyed by its ETag and named by its path under the prefix).
SAME = {
    "samples": "SELECT id, question, response, image_paths, source_row FROM sft_samples ORDER BY id",
    "images": "SELECT sha256, path, bytes FROM images ORDER BY sha256",
    "rejects": "SELECT source_row, reason FROM rejects ORDER BY ALL",
}


def _prefix(uri: str) -> str:
    return uri.split(f"s3://{BUCKET}/", 1)[1]


def _prepare(source, home: DataHome) -> list:
    return [prepare.prepare_shard(spec, home, CONFIG) for spec in prepare.plan(source, SPLIT, CONFIG, home)]


def _rows(home: DataHome) -> dict:
    return {name: catalog.query(home, sql)[1] for name, sql in SAME.items()}


def test_an_s3_prefix_prepares_what_the_same_folder_on_disk_does(s3, tmp_path):
    uri, client, _ = s3
    folder = source_with_image_files(tmp_path / "src", SPLIT, n=6, size=(256, 192))
    upload_folder(client, BUCKET, _prefix(uri), folder)
    disk, remote = DataHome(tmp_path / "disk"), DataHome(tmp_path / "remote")
    _prepare(folder, disk)
    _prepare(uri, remote)

    got, want = _rows(remote), _rows(disk)
    assert got == want
    assert len(got["samples"]) == 9  # 6 from the Parquet, 3 from the JSONL whose images are S3 objects
    assert [r[1] for r in got["rejects"]] == ["missing_image_file"]
    detail = catalog.query(remote, "SELECT detail FROM rejects")[1][0][0]
    assert f"looked at {uri}/sub/img/missing.jpg" in detail, detail
    names = catalog.query(remote, "SELECT DISTINCT source_file FROM prepare_shards ORDER BY 1")[1]
    assert names == [("a.parquet",), ("sub/paths.jsonl",)]  # the object's name under the prefix


def test_a_shard_fetches_its_footer_and_its_own_row_groups_only(s3, s3_endpoint, tmp_path):
    uri, client, _ = s3
    path = tmp_path / "big.parquet"
    rows = list(generate_records(SPLIT, 16, 5, 640, 480, 1))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=2)
    key = f"{_prefix(uri)}/big.parquet"
    client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    size, md = path.stat().st_size, pq.ParquetFile(path).metadata
    specs = prepare.plan(uri, SPLIT, CONFIG)
    assert [s.row_groups for s in specs] == [(g,) for g in range(8)]

    spec = specs[5]
    with recorded(s3_endpoint) as requests:
        result = prepare.prepare_shard(spec, DataHome(tmp_path / "home"), CONFIG)
    assert result.summary.samples_image == 2
    gets = [r["headers"].get("Range") for r in requests
            if r["method"] == "GET" and urlparse(r["url"]).path == f"/{BUCKET}/{key}"]
    assert gets and None not in gets  # every read of the object asked for a range, none for all of it
    ranges = [tuple(map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", g).groups())) for g in gets]
    group = md.row_group(5)
    chunks = [group.column(i) for i in range(group.num_columns)]
    lo = min(c.dictionary_page_offset or c.data_page_offset for c in chunks)
    hi = max((c.dictionary_page_offset or c.data_page_offset) + c.total_compressed_size for c in chunks)
    footer = size - (64 << 10)  # pyarrow's first footer read
    assert all(lo <= a and b < hi or a >= footer for a, b in ranges), (ranges, lo, hi, size)
    fetched = sum(b - a + 1 for a, b in ranges)
    assert fetched < size / 4, (fetched, size)


def test_a_rerun_after_an_upload_prepares_only_the_new_object(s3, tmp_path, prefect_server):
    uri, client, env = s3
    rows = list(generate_records("computation", 8, 9, 256, 192, 1))
    for name, part in (("a.parquet", rows[:5]), ("b.parquet", rows[5:])):
        pq.write_table(pa.Table.from_pylist(part, schema=SCHEMA), tmp_path / name)
    client.upload_file(str(tmp_path / "a.parquet"), BUCKET, f"{_prefix(uri)}/incoming/a.parquet")
    client.put_object(Bucket=BUCKET, Key=f"{_prefix(uri)}/incoming/README.txt", Body=b"x")
    home = tmp_path / "home"
    env = dict(env, PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "ph"))
    thyme("prepare", f"{uri}/incoming", "--split", "computation", "--home", home, "--shard-rows", 4, env=env)
    assert catalog.query(DataHome(home), "SELECT count(*) FROM sft_samples")[1] == [(5,)]

    client.upload_file(str(tmp_path / "b.parquet"), BUCKET, f"{_prefix(uri)}/incoming/b.parquet")
    specs = prepare.plan(f"{uri}/incoming", "computation", prepare.PrepareConfig(shard_rows=4))
    done = {s.display_name for s in specs if prepare.finished(s, DataHome(home))}
    todo = {s.display_name for s in specs if not prepare.finished(s, DataHome(home))}
    assert (done, todo) == ({"a.parquet"}, {"b.parquet"})  # a.parquet unchanged: its shards are reused


def test_missing_truncated_and_rewritten_objects_are_clear_errors(s3, tmp_path):
    uri, client, _ = s3
    with pytest.raises(ThymeError, match=r"nope\.parquet: no such object"):
        prepare.plan(f"{uri}/nope.parquet", SPLIT, CONFIG)
    with pytest.raises(ThymeError, match=r"empty: no \.parquet or \.jsonl objects under this prefix"):
        prepare.plan(f"{uri}/empty", SPLIT, CONFIG)

    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(list(generate_records(SPLIT, 4, 1, 160, 120, 1)), schema=SCHEMA), path,
                   row_group_size=1)
    data = path.read_bytes()
    client.put_object(Bucket=BUCKET, Key=f"{_prefix(uri)}/cut/t.parquet", Body=data[: len(data) * 2 // 3])
    with pytest.raises(ThymeError, match=r"cut/t\.parquet: not a readable Parquet file"):
        prepare.plan(f"{uri}/cut", SPLIT, CONFIG)

    key = f"{_prefix(uri)}/ok/t.parquet"
    client.put_object(Bucket=BUCKET, Key=key, Body=data)
    first, second = prepare.plan(f"{uri}/ok", SPLIT, CONFIG)[:2]
    client.put_object(Bucket=BUCKET, Key=key, Body=data + b"\n")  # rewritten after the plan: another ETag
    with pytest.raises(ThymeError, match=r"t\.parquet: the object changed since this run was planned"):
        prepare.prepare_shard(first, DataHome(tmp_path / "home"), CONFIG)
    client.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ThymeError, match=r"t\.parquet: no such object .*it was there when the run was planned"):
        prepare.prepare_shard(second, DataHome(tmp_path / "home"), CONFIG)
