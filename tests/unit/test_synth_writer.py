"""The synthetic data files have the Hugging Face `datasets` layout, row groups, zstd, and appear atomically."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thyme_cli.main import main
from thyme_core.synth import SCHEMA, generate_records, write_dataset
from thyme_core.synth.writer import write_parquet

SIZE = dict(width=320, height=240)


def test_parquet_has_the_hf_schema_row_groups_and_zstd(tmp_path):
    out = tmp_path / "train.parquet"
    assert write_dataset(out, "computation", 25, row_group_size=10, workers=1, **SIZE) == 25
    f = pq.ParquetFile(out)
    assert f.schema_arrow.field("image").type == pa.list_(pa.string())
    assert f.schema_arrow.field("question").type == pa.string()
    assert f.schema_arrow.field("response").type == pa.string()
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [10, 10, 5]
    assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    features = json.loads(f.schema_arrow.metadata[b"huggingface"])["info"]["features"]
    assert set(features) == {"image", "question", "response"}
    rows = f.read().to_pylist()
    assert rows == list(generate_records("computation", 25, **SIZE, workers=1))
    assert any(r["image"] == [] for r in rows) and any(r["image"] for r in rows)


def test_jsonl_has_the_same_rows(tmp_path):
    out = tmp_path / "train.jsonl"
    write_dataset(out, "2round", 4, fmt="jsonl", workers=1, **SIZE)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == list(generate_records("2round", 4, **SIZE, workers=1))
    assert all(set(r) == {"image", "question", "response"} and len(r["image"]) == 3 for r in rows)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    def rows():
        yield from generate_records("computation", 3, **SIZE, workers=1)
        raise RuntimeError("generator died")

    out = tmp_path / "train.parquet"
    with pytest.raises(RuntimeError):
        write_parquet(out, rows(), row_group_size=2)
    assert list(tmp_path.iterdir()) == []


def test_schema_is_exactly_three_columns():
    assert SCHEMA.names == ["image", "question", "response"]


def test_cli_writes_the_file(tmp_path, capsys):
    out = tmp_path / "sub" / "2round.parquet"
    rc = main(["synth", str(out), "--split", "2round", "--n", "3", "--size", "320x240", "--seed", "5",
               "--row-group-size", "2", "--workers", "1"])
    assert rc == 0 and "wrote 3 2round samples" in capsys.readouterr().out
    assert pq.ParquetFile(out).metadata.num_row_groups == 2
    assert [p.name for p in out.parent.iterdir()] == ["2round.parquet"]


def test_cli_infers_jsonl_and_rejects_bad_options(tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert main(["synth", str(out), "--split", "computation", "--n", "2", "--size", "320x240"]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert main(["synth", str(tmp_path / "x.parquet"), "--split", "3round"]) == 2
    assert main(["synth", str(tmp_path / "x.parquet"), "--split", "2round", "--size", "big"]) == 2
    assert "unknown split" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
