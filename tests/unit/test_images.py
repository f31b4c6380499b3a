"""Image checks and conversions: each payload of synth.bad gets exactly the reason it claims."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from thyme_core.images.store import ImageConfig, ImageStore, decode_base64, prepare_image
from thyme_core.base.reasons import Reject, Rejected, Repair
from thyme_core.synth import bad

PAYLOADS = bad.bad_images(include_controls=True)


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_every_payload_gets_its_reason(payload):
    if isinstance(payload.reason, Reject):
        with pytest.raises(Rejected) as err:
            prepare_image(decode_base64(payload.b64))
        assert err.value.reason == payload.reason, err.value.detail
        return
    out = prepare_image(decode_base64(payload.b64))
    assert out.repair == payload.reason
    stored = Image.open(io.BytesIO(out.data))
    assert stored.format == out.format and stored.size == (out.width, out.height)
    if payload.reason == Repair.NONE:
        # already usable: the stored bytes are the input bytes, untouched
        assert out.data == base64.b64decode(payload.b64)
    else:
        assert stored.mode == "RGB"


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    out = prepare_image(bad.encode(rgba, "PNG"))
    pixels = Image.open(io.BytesIO(out.data))
    assert pixels.getpixel((5, 5)) == (255, 255, 255)
    assert pixels.getpixel((0, 0)) == (0, 0, 255)


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.full((30, 40), 65535, dtype=np.uint16)
    arr[0, 0] = 32896  # 128 * 257
    out = prepare_image(bad.encode(Image.fromarray(arr), "PNG"))
    pixels = np.asarray(Image.open(io.BytesIO(out.data)))
    assert pixels[5, 5].tolist() == [255, 255, 255] and pixels[0, 0].tolist() == [128, 128, 128]


def test_jpeg_with_trailing_metadata_after_eoi_is_kept_byte_for_byte():
    data = bad.encode(bad.picture(), "JPEG") + b"\x00" * 10 + b"MPF trailer" * 20
    assert prepare_image(data).data == data


def test_pixel_limit_is_configurable():
    data = bad.encode(bad.picture(), "JPEG")  # 64x48 = 3072 px
    assert prepare_image(data, ImageConfig(max_pixels=3072)).width == 64
    with pytest.raises(Rejected) as err:
        prepare_image(data, ImageConfig(max_pixels=3071))
    assert err.value.reason == Reject.DECOMPRESSION_BOMB


def test_decode_verification_also_accepts_good_jpeg():
    data = bad.encode(bad.picture(), "JPEG")
    assert prepare_image(data, ImageConfig(verify="decode")).data == data
    with pytest.raises(ValueError):
        ImageConfig(verify="sometimes")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data:image/png;base64," + base64.b64encode(b"\x89PNG").decode(), b"\x89PNG"),  # data URI prefix
        (base64.encodebytes(b"x" * 100).decode(), b"x" * 100),  # MIME line breaks every 76 chars
    ],
)
def test_base64_variants_decode(text, expected):
    assert decode_base64(text) == expected


def test_store_writes_once_under_content_hash(tmp_path):
    store = ImageStore(tmp_path, tmp_path / "tmp")
    image = prepare_image(bad.encode(bad.picture(), "PNG"))
    assert store.put(image) is True
    assert store.put(image) is False  # second sample with the same picture: deduplicated
    path = tmp_path / image.relpath
    assert path.read_bytes() == image.data and image.sha256 in path.name
    assert list((tmp_path / "tmp").iterdir()) == []  # no staging debris
