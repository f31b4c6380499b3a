"""RL data in the released form ({messages, images, solution, question}) through the same prepare path as SFT."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thyme_core import catalog, prepare
from thyme_core.base.errors import ThymeError
from thyme_core.prepare.report import build_report
from thyme_core.base.reasons import Reject
from thyme_core.synth import bad, generate_records
from thyme_core.synth.rl import RL_SCHEMA, generate_rl_records, write_rl_dataset, write_rl_parquet
from thyme_core.synth.writer import write_parquet

CONFIG = prepare.PrepareConfig(shard_rows=4)


@pytest.fixture(scope="module")
def rl_rows():
    return list(generate_rl_records(6, seed=0, width=320, height=240))


def _run(home, source, split="rl", config=CONFIG):
    return [prepare.prepare_shard(spec, home, config) for spec in prepare.plan(source, split, config)]


def test_good_rl_rows_land_in_rl_samples_with_stored_images_and_prompt(home, tmp_path, rl_rows):
    write_rl_parquet(tmp_path / "rl.parquet", rl_rows)
    results = _run(home, tmp_path / "rl.parquet")
    assert sum(r.summary.samples_rl for r in results) == len(rl_rows)
    assert sum(r.summary.samples_image + r.summary.samples_text for r in results) == 0
    con = catalog.read(home)
    got = con.execute("SELECT source_row, question, prompt, solution, image_paths, has_image, split "
                      "FROM rl_samples ORDER BY source_row").fetchall()
    assert [g[0] for g in got] == list(range(len(rl_rows)))
    for (_, question, prompt, solution, paths, has_image, split), row in zip(got, rl_rows):
        assert (question, solution, split, has_image) == (row["question"], row["solution"], "rl", True)
        assert len(paths) == 1 and (home.root / paths[0]).is_file()
        messages = json.loads(prompt)
        assert [m["role"] for m in messages] == ["system", "user"]
        user = messages[1]["content"]
        assert user.startswith("<image>\n") and paths[0] in user  # the path line names the store
        original = row["messages"][1]["content"]
        stale = re.search(r"User Image Path:[\s*\"'`]*([^\s\"'`*]+)", original).group(1)
        assert stale in original and stale not in user  # the made-up path is gone
    assert con.execute("SELECT count(*) FROM sft_samples").fetchone()[0] == 0
    stored = {r[0] for r in con.execute("SELECT path FROM images").fetchall()}
    assert {p for g in got for p in g[4]} <= stored


def _bad_rl_rows(base):
    """One RL row per bad image payload and per bad field, with the expected reason (Repair: kept)."""
    rows, expected = [], {}
    for payload in bad.bad_images():
        expected[len(rows)] = payload.reason
        rows.append({**base, "images": [payload.b64]})
    broken = [
        {**base, "question": None},  # a null field
        {**base, "solution": None},
        {**base, "messages": None},
        {**base, "messages": [{"role": "user", "content": None}]},  # a message without text
        {**base, "images": ["not base64 !!"]},
    ]
    for row in broken:
        expected[len(rows)] = Reject.BAD_FIELD if row["images"] == base["images"] else Reject.INVALID_BASE64
        rows.append(row)
    return rows, expected


def test_bad_images_and_fields_get_their_reasons(home, tmp_path, rl_rows):
    rows, expected = _bad_rl_rows(rl_rows[0])
    write_rl_parquet(tmp_path / "bad.parquet", rows)
    _run(home, tmp_path / "bad.parquet")
    con = catalog.read(home)
    rejects = dict(con.execute("SELECT source_row, reason FROM rejects WHERE reason <> 'duplicate_sample'").fetchall())
    assert rejects == {row: str(r) for row, r in expected.items() if isinstance(r, Reject)}
    kept = {r[0] for r in con.execute("SELECT source_row FROM rl_samples_all").fetchall()}
    assert kept == {row for row, r in expected.items() if not isinstance(r, Reject)}  # repairs are kept
    repairs = {r[0] for r in con.execute("SELECT repair FROM images WHERE repair <> ''").fetchall()}
    assert repairs == {str(r) for r in expected.values() if not isinstance(r, Reject) and str(r)}


def test_jsonl_rl_rows_missing_a_key_are_bad_field(home, tmp_path, rl_rows):
    lines = [dict(rl_rows[0]), {k: v for k, v in rl_rows[1].items() if k != "solution"}, "{broken"]
    (tmp_path / "rl.jsonl").write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    _run(home, tmp_path / "rl.jsonl")
    con = catalog.read(home)
    assert con.execute("SELECT source_row, reason FROM rejects ORDER BY 1").fetchall() == [
        (1, "bad_field"), (2, "bad_field")]
    assert con.execute("SELECT source_row FROM rl_samples").fetchall() == [(0,)]


def test_mixed_folder_of_sft_and_rl_files(home, tmp_path, rl_rows):
    src = tmp_path / "src"
    sft = list(generate_records("2round", 3, 0, 320, 240, 1))
    write_parquet(src / "a_sft.parquet", sft)
    write_rl_dataset(src / "b_rl.jsonl", 3, seed=1, width=320, height=240)
    # the `image` column name is accepted for RL files too
    table = pa.Table.from_pylist(rl_rows, schema=RL_SCHEMA).rename_columns(["messages", "image", "solution", "question"])
    pq.write_table(table, src / "c_rl_image.parquet")
    specs = prepare.plan(src, "mix", CONFIG)
    assert {(s.path.rsplit("/", 1)[1], s.schema) for s in specs} == {
        ("a_sft.parquet", "sft"), ("b_rl.jsonl", "rl"), ("c_rl_image.parquet", "rl")}
    results = _run(home, src, "mix")
    con = catalog.read(home)
    assert con.execute("SELECT count(*) FROM sft_samples").fetchone()[0] == len(sft)
    by_file = dict(con.execute("SELECT source_file, count(*) FROM rl_samples GROUP BY 1").fetchall())
    assert by_file == {"b_rl.jsonl": 3, "c_rl_image.parquet": len(rl_rows)}
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    for spec in specs:  # every shard folder has the same parts, the other schema's empty
        parts = {p.name for p in prepare.shard_dir(home, spec.key).iterdir()}
        assert {"image_samples.parquet", "text_samples.parquet", "rl_samples.parquet"} <= parts
    report = build_report(home, "mix", results, 1.0)
    assert report.samples_rl == 3 + len(rl_rows) and f"| mix | {3 + len(rl_rows)} |" in report.markdown()
    columns, rows = catalog.named(home, "rl_counts")
    assert columns[:3] == ["split", "rl_samples", "with_image"] and rows[0][:3] == ("mix", 3 + len(rl_rows), 3 + len(rl_rows))


@pytest.mark.parametrize(
    "columns, message",
    [
        # neither schema: every missing SFT column is named, and what each schema needs
        ({"text": pa.string()}, r"missing columns 'image', 'question', 'response' \(has: text; SFT columns"),
        # an RL file (it has messages) without its solution
        ({"messages": pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
          "images": pa.list_(pa.string()), "question": pa.string()}, "missing column 'solution'"),
        # messages as plain strings, not {role, content}
        ({"messages": pa.list_(pa.string()), "images": pa.list_(pa.string()), "question": pa.string(),
          "solution": pa.string()}, "column 'messages' has type"),
    ],
)
def test_a_file_of_neither_schema_is_a_clear_error(tmp_path, columns, message):
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.schema(list(columns.items())).empty_table(), path)
    with pytest.raises(ThymeError, match=message) as err:
        prepare.plan(path, "s", CONFIG)
    assert str(path) in str(err.value)


def test_jsonl_of_neither_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    with pytest.raises(ThymeError, match="odd.jsonl: missing columns 'question', 'response'"):
        prepare.plan(path, "s", CONFIG)


def test_rerun_adds_nothing_and_duplicates_are_reported(home, tmp_path, rl_rows):
    src = tmp_path / "src"
    write_rl_parquet(src / "a.parquet", rl_rows)
    first = _run(home, src)
    again = _run(home, src)
    assert all(r.reused for r in again) and [r.summary for r in again] == [r.summary for r in first]
    write_rl_parquet(src / "copy.parquet", rl_rows[:2])  # the same prompts in a second file
    _run(home, src)
    con = catalog.read(home)
    assert con.execute("SELECT count(*) FROM rl_samples").fetchone()[0] == len(rl_rows)
    assert con.execute("SELECT source_file, reason FROM rejects").fetchall() == [("copy.parquet", "duplicate_sample")] * 2
