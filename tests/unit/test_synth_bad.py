"""bad.py's payloads really are what they claim, so tests that use them test the right thing."""

from __future__ import annotations

import base64
import binascii
import io
import struct

import pytest
from PIL import Image, UnidentifiedImageError

from thyme_core.base.reasons import Reject, Repair
from thyme_core.synth import bad, generate_sample
from thyme_core.thyme_format import OUTPUT_DIR, code_blocks, sandbox_outputs


def _bytes(b: bad.BadImage) -> bytes:
    return base64.b64decode(b.b64, validate=True)


def _open(b: bad.BadImage) -> Image.Image:
    return Image.open(io.BytesIO(_bytes(b)))


@pytest.fixture(scope="module")
def record():
    return generate_sample("2round", 0, width=320, height=240).record()


def test_invalid_base64_does_not_decode():
    with pytest.raises(binascii.Error):
        base64.b64decode(bad.invalid_base64().b64, validate=True)


def test_empty_and_zero_size():
    assert _bytes(bad.empty_payload()) == b""
    data = _bytes(bad.zero_size_png())
    assert data.startswith(b"\x89PNG") and struct.unpack(">II", data[16:24]) == (0, 0)


@pytest.mark.parametrize("make", [bad.truncated_jpeg, bad.truncated_png])
def test_truncated_images_open_but_do_not_load(make):
    im = _open(make())
    with pytest.raises((OSError, SyntaxError)):  # PIL: "image file is truncated" / broken PNG
        im.load()


def test_garbage_is_not_an_image():
    with pytest.raises(UnidentifiedImageError):
        _open(bad.garbage_bytes())


def test_bomb_declares_400_megapixels_in_a_few_bytes():
    data = _bytes(bad.decompression_bomb())
    assert len(data) < 200 and struct.unpack(">II", data[16:24]) == (20000, 20000)


@pytest.mark.parametrize(
    "make, fmt, mode",
    [
        (bad.cmyk_jpeg, "JPEG", "CMYK"),
        (bad.gray16_png, "PNG", "I;16"),
        (bad.rgba_png, "PNG", "RGBA"),
        (bad.la_png, "PNG", "LA"),
        (bad.palette_png_transparent, "PNG", "P"),
        (bad.palette_png, "PNG", "P"),
        (bad.webp, "WEBP", "RGB"),
        (bad.gif, "GIF", "P"),
        (bad.bmp, "BMP", "RGB"),
        (bad.tiff, "TIFF", "RGB"),
        (bad.rgb_jpeg, "JPEG", "RGB"),
        (bad.gray_png, "PNG", "L"),
    ],
)
def test_unusual_images_have_the_claimed_format_and_mode(make, fmt, mode):
    im = _open(make())
    im.load()  # they are complete, decodable images
    assert (im.format, im.mode, im.size) == (fmt, mode, (bad.W, bad.H))


def test_alpha_is_really_there_and_palette_transparency_only_where_claimed():
    assert _open(bad.rgba_png()).getextrema()[3][0] < 255  # some pixels are see-through
    assert _open(bad.la_png()).getextrema()[1][0] < 255
    assert "transparency" in _open(bad.palette_png_transparent()).info
    assert "transparency" not in _open(bad.palette_png()).info
    assert _bytes(bad.gray16_png())[24] == 16  # the PNG header's bit depth


def test_catalogue_reasons():
    # Rejected payloads carry a Reject code, kept ones a real Repair, controls Repair.NONE.
    assert all(isinstance(make().reason, Reject) for make in bad.REJECTED_IMAGES)
    assert all(isinstance(make().reason, Repair) and make().reason != Repair.NONE for make in bad.REPAIRED_IMAGES)
    assert all(make().reason == Repair.NONE for make in bad.CONTROL_IMAGES)
    names = [b.name for b in bad.bad_images(include_controls=True)]
    assert len(set(names)) == len(names) == 19


def test_record_problems(record):
    problems = {p.name: p for p in bad.bad_records(record)}
    assert "question" not in problems["missing_question"].record
    assert problems["null_response"].record["response"] is None
    assert isinstance(problems["image_not_list"].record["image"], str)
    short = problems["missing_processed_image"].record
    shown = sum(o.shows_image for o in sandbox_outputs(short["response"]))
    assert shown > len(short["image"]) - 1
    ghost = problems["unmapped_code_path"].record["response"]
    printed = {o.body.strip() for o in sandbox_outputs(ghost)}
    first = code_blocks(ghost)[0].code
    assert f"{OUTPUT_DIR}/never_saved_0f0f0f0f.png" in first and f"{OUTPUT_DIR}/never_saved_0f0f0f0f.png" not in printed
    assert {p.reason for p in problems.values()} == {Reject.BAD_FIELD, Reject.IMAGE_COUNT_MISMATCH,
                                                      Reject.UNMAPPED_PATH}
    assert record == generate_sample("2round", 0, width=320, height=240).record()  # the input is not mutated


def test_with_image_replaces_one_entry(record):
    out = bad.with_image(record, bad.cmyk_jpeg(), index=1)
    assert out["image"][1] == bad.cmyk_jpeg().b64 and out["image"][0] == record["image"][0]
