"""Image values in every form users ship (images/values.py), in SFT and RL data, through prepare.

Checked: each form of one picture (base64, data URI, absolute / relative / ~ path, file:// URI, raw bytes,
HF Image struct with bytes or with a path) stores the same sha256; a missing or unreadable file is a reason
code on that record only; a `datasets`-written Parquet with Image features prepares; the released RL form
naming image files goes through prepare into rl_samples and an RL step with no extra setting.
"""

import base64
import io
import json

import pytest
from PIL import Image

from thyme_core import catalog, prepare
from thyme_core.base.reasons import Reject, Rejected
from thyme_core.images.values import classify, load_bytes

CONFIG = prepare.PrepareConfig(shard_rows=8)


def png(colour=(200, 30, 30), size=(120, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("value, form", [
    ("/9j/4AAQSkZJRgABAQ==", "base64"),  # a JPEG's base64 starts with "/": not a path
    ("iVBORw0KGgoAAAANSUhEUg==", "base64"),
    ("data:image/png;base64,iVBORw0KGgo=", "base64"),  # a data URI: its payload
    ("/data/images/001.jpg", "path"),  # a '.' never occurs in base64
    ("images/001.png", "path"),  # relative, with an extension
    ("../pics/a b.JPEG", "path"),
    ("~/pics/a.jpg", "path"),
    ("file:///tmp/a.png", "path"),
    ("/mnt/data/some-folder/img", "path"),  # absolute, with a '-' base64 never has
    ("not base64 !!", "base64"),  # no path marker: decoding it tells it is invalid base64
    ({"bytes": None, "path": "a.png"}, "struct"),  # HF datasets Image feature
    (b"\x89PNG", "bytes"),
])
def test_classify_each_value_on_its_own(value, form):
    assert classify(value) == form


def test_every_form_of_one_picture_stores_the_same_image(tmp_path, monkeypatch):
    data = png()
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(data)
    (tmp_path / "noext").write_bytes(data)
    monkeypatch.setenv("HOME", str(tmp_path))
    b64 = base64.b64encode(data).decode()
    values = [b64, "data:image/png;base64," + b64, str(tmp_path / "imgs" / "a.png"), "imgs/a.png", "./imgs/a.png",
              "~/imgs/a.png", (tmp_path / "imgs" / "a.png").as_uri(), data, {"bytes": data, "path": None},
              {"bytes": None, "path": "imgs/a.png"}, "noext"]  # a bare relative name that exists is a path
    for value in values:
        assert load_bytes(value, base=tmp_path) == data, value


@pytest.mark.parametrize("value, reason", [
    ("imgs/missing.jpg", Reject.MISSING_IMAGE_FILE),
    ("file:///no/such/file.png", Reject.MISSING_IMAGE_FILE),
    ({"bytes": None, "path": "gone.png"}, Reject.MISSING_IMAGE_FILE),
    ("imgs/", Reject.UNREADABLE_IMAGE_FILE),  # a folder is not an image file
    ("./empty.png", Reject.EMPTY_IMAGE),
    ({"bytes": None, "path": None}, Reject.EMPTY_IMAGE),
    ("not*base64!!", Reject.INVALID_BASE64),
    (42, Reject.BAD_FIELD),
])
def test_bad_values_are_reason_codes(tmp_path, value, reason):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(Rejected) as err:
        load_bytes(value, base=tmp_path)
    assert err.value.reason == reason


def _sft_row(image_values):
    return {"image": image_values, "question": "<image>\nWhat colour is it?\nA. red\nB. blue",
            "response": "<think>It is red.</think>\n<answer>A</answer>"}


def test_sft_jsonl_with_paths_missing_files_are_rejects_not_crashes(home, tmp_path):
    data = tmp_path / "data"
    (data / "imgs").mkdir(parents=True)
    (data / "imgs" / "a.png").write_bytes(png())
    (data / "imgs" / "b.png").write_bytes(png((0, 0, 200)))
    rows = [_sft_row(["imgs/a.png"]), _sft_row([str(data / "imgs" / "b.png")]), _sft_row(["imgs/nope.png"]),
            _sft_row([base64.b64encode(png((0, 200, 0))).decode()])]
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for spec in prepare.plan(data / "train.jsonl", "s", CONFIG):
        prepare.prepare_shard(spec, home, CONFIG)
    con = catalog.read(home)
    assert con.execute("SELECT source_row, reason FROM rejects").fetchall() == [(2, "missing_image_file")]
    paths = [r[0] for r in con.execute("SELECT image_paths[1] FROM sft_samples ORDER BY source_row").fetchall()]
    assert len(paths) == 3 and all(p.startswith("images/") and (home.root / p).is_file() for p in paths)


def test_datasets_parquet_with_image_features(home, tmp_path):
    datasets = pytest.importorskip("datasets")
    (tmp_path / "a.png").write_bytes(png())
    features = datasets.Features({"image": datasets.Sequence(datasets.Image()), "question": datasets.Value("string"),
                                  "response": datasets.Value("string")})
    rows = [_sft_row([str(tmp_path / "a.png")]), _sft_row([png((10, 10, 10))])]
    ds = datasets.Dataset.from_list(rows, features=features)
    ds.to_parquet(str(tmp_path / "hf.parquet"))
    single = datasets.Dataset.from_list([{**rows[0], "image": str(tmp_path / "a.png")}], features=datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "response": datasets.Value("string")}))
    (tmp_path / "one").mkdir()
    single.to_parquet(str(tmp_path / "one" / "single.parquet"))
    for source in (tmp_path / "hf.parquet", tmp_path / "one" / "single.parquet"):
        for spec in prepare.plan(source, "hf", CONFIG):
            prepare.prepare_shard(spec, home, CONFIG)
    con = catalog.read(home)
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 1  # single.parquet repeats row 0
    shas = {r[0] for r in con.execute("SELECT image_sha256[1] FROM sft_samples_all").fetchall()}
    import hashlib
    assert hashlib.sha256(png()).hexdigest() in shas and len(shas) == 2


def test_released_rl_form_with_file_paths_trains(home, tmp_path):
    """The form Thyme's README documents: "images": ["/path/to/image.jpg"], then train-rl's prompt loader
    and one GRPO step on the tiny model, with no extra flag."""
    from tests.fakes import RL_QUESTION as QUESTION, steer
    from thyme_core.rl import launch as rl_launch
    from thyme_core.rl.config import load_preset
    from thyme_core.rl.data import load_prompts
    from thyme_core.rl.judge import StaticJudge

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "r.png").write_bytes(png((210, 40, 40), (300, 240)))
    rows = [{"messages": [{"role": "user", "content": "<image>\n" + QUESTION}], "images": [img],
             "solution": "A", "question": QUESTION}
            for img in (str(tmp_path / "img" / "r.png"), "img/r.png", "img/missing.png")]
    rows[1]["question"] += " "  # a second prompt (same image, another id)
    (tmp_path / "rl.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for spec in prepare.plan(tmp_path / "rl.jsonl", "rl", CONFIG):
        prepare.prepare_shard(spec, home, CONFIG)
    _, rejects = catalog.query(home, "SELECT source_row, reason FROM rejects")
    assert rejects == [(2, "missing_image_file")]
    prompts = load_prompts(home, "rl", 0)
    assert len(prompts) == 2 and all(p.image.is_file() for p in prompts)
    cfg = load_preset("rl_tiny", nproc=0, group_size=2, prompts_per_step=1, max_new_tokens=400, max_length=1200,
                      max_steps=1, save_steps=1)
    result = rl_launch.train(home, rl_launch.prepare_run(home, cfg, prompts), StaticJudge(1.0), steer)
    assert result["steps"] == 1
