"""`thyme prepare s3://bucket/prefix`: the prefix is mirrored into the home (only new or changed objects
downloaded) and prepared; a second sync after a new upload fetches just that file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.prepare.s3_mirror import sync_source
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA
from tests.integration.conftest import BUCKET, thyme


def _upload(client, uri, name, rows, tmp_path):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    prefix = uri.split(f"s3://{BUCKET}/", 1)[1]
    client.upload_file(str(path), BUCKET, f"{prefix}/incoming/{name}")


def test_prepare_from_an_s3_prefix_downloads_only_what_is_new(s3, tmp_path, prefect_server):
    uri, client, env = s3
    rows = list(generate_records("computation", 8, 9, 256, 192, 1))
    _upload(client, uri, "a.parquet", rows[:5], tmp_path)
    client.put_object(Bucket=BUCKET, Key=uri.split(f"s3://{BUCKET}/", 1)[1] + "/incoming/README.txt", Body=b"x")
    home = tmp_path / "home"
    env = dict(env, PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "ph"))
    thyme("prepare", f"{uri}/incoming", "--split", "computation", "--home", home, "--shard-rows", 4, env=env)
    con = catalog.read(DataHome(home))
    assert con.execute("SELECT count(*) FROM sft_samples").fetchone()[0] == 5
    con.close()

    _upload(client, uri, "b.parquet", rows[5:], tmp_path)
    again = sync_source(f"{uri}/incoming", DataHome(home))
    assert (again.objects, again.downloaded) == (2, 1)  # a.parquet unchanged: not downloaded again
    assert sorted(p.name for p in again.folder.iterdir() if not p.name.startswith(".")) == ["a.parquet", "b.parquet"]
