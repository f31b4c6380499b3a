"""Bad and unusual inputs for tests and benchmarks, each paired with the reason code the pipeline should record.

Image payloads (`BadImage`): the base64 string that would sit in a sample's `image` list, and the
Reject code (the sample is dropped) or Repair code (the image is converted and kept). Record problems
(`BadRecord`): a whole row damaged in one way, and its Reject code. Everything is deterministic and small
(64x48 pictures), so tests can build the full catalogue in milliseconds:

    >>> [b.name for b in bad_images()][:3]
    ['invalid_base64', 'empty_payload', 'zero_size_png']
"""

from __future__ import annotations

import base64
import copy
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from thyme_core.base.reasons import Reject, Repair
from thyme_core.thyme_format import CODE_BLOCK_RE, OUTPUT_DIR, sandbox_outputs

W, H = 64, 48


@dataclass(frozen=True)
class BadImage:
    name: str
    b64: str  # what goes into the `image` list
    reason: Reject | Repair
    note: str = ""


@dataclass(frozen=True)
class BadRecord:
    name: str
    record: dict
    reason: Reject
    note: str = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def picture(mode: str = "RGB") -> Image.Image:
    """A small deterministic picture (gradient, a square, noise) in the given PIL mode."""
    ys, xs = np.mgrid[0:H, 0:W]
    rgb = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=-1).astype(np.int32)
    rgb[10:30, 20:40] = (200, 30, 30)
    rgb += np.random.default_rng(7).integers(0, 8, size=rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert(mode)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int, payload: bytes = b"\x00" * 64) -> bytes:
    """A well-formed PNG container (valid CRCs) whose IHDR declares width x height 8-bit grey."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(payload))
            + _png_chunk(b"IEND", b""))


# --- image payloads that must be rejected ------------------------------------------------------------


def invalid_base64() -> BadImage:
    return BadImage("invalid_base64", "not*base64!!" + _b64(b"abc")[:-1], Reject.INVALID_BASE64)


def empty_payload() -> BadImage:
    return BadImage("empty_payload", "", Reject.EMPTY_IMAGE, "zero bytes after decoding")


def zero_size_png() -> BadImage:
    return BadImage("zero_size_png", _b64(png_with_header(0, 0)), Reject.EMPTY_IMAGE,
                    "PNG header declares 0x0 (PIL refuses to identify it)")


def truncated_jpeg() -> BadImage:
    data = encode(picture(), "JPEG", quality=90)
    return BadImage("truncated_jpeg", _b64(data[: len(data) * 6 // 10]), Reject.TRUNCATED_IMAGE)


def truncated_png() -> BadImage:
    data = encode(picture(), "PNG")
    return BadImage("truncated_png", _b64(data[: len(data) // 2]), Reject.TRUNCATED_IMAGE)


def garbage_bytes() -> BadImage:
    data = b"this is not an image at all \x00\x01\x02" + bytes(range(256))
    return BadImage("garbage_bytes", _b64(data), Reject.UNKNOWN_FORMAT)


def decompression_bomb(width: int = 20000, height: int = 20000) -> BadImage:
    return BadImage("decompression_bomb", _b64(png_with_header(width, height)), Reject.DECOMPRESSION_BOMB,
                    f"header declares {width}x{height} with a few bytes of data")


# --- image payloads that are converted and kept ------------------------------------------------------


def cmyk_jpeg() -> BadImage:
    return BadImage("cmyk_jpeg", _b64(encode(picture("CMYK"), "JPEG", quality=90)), Repair.CMYK_TO_RGB)


def gray16_png() -> BadImage:
    arr = (np.asarray(picture("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return BadImage("gray16_png", _b64(encode(Image.fromarray(arr), "PNG")), Repair.HIGH_BIT_DEPTH)


def rgba_png() -> BadImage:
    im = picture("RGBA")
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    return BadImage("rgba_png", _b64(encode(im, "PNG")), Repair.ALPHA_ON_WHITE)


def la_png() -> BadImage:
    im = picture("LA")
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    return BadImage("la_png", _b64(encode(im, "PNG")), Repair.ALPHA_ON_WHITE)


def palette_png_transparent() -> BadImage:
    im = picture().quantize(16)
    return BadImage("palette_png_transparent", _b64(encode(im, "PNG", transparency=0)), Repair.ALPHA_ON_WHITE)


def palette_png() -> BadImage:
    return BadImage("palette_png", _b64(encode(picture().quantize(16), "PNG")), Repair.PALETTE_TO_RGB)


def webp() -> BadImage:
    return BadImage("webp", _b64(encode(picture(), "WEBP", quality=90)), Repair.FORMAT_TO_RGB)


def gif() -> BadImage:
    return BadImage("gif", _b64(encode(picture(), "GIF")), Repair.FORMAT_TO_RGB,
                    "GIF decodes to mode P: a format conversion first, a palette one as well")


def bmp() -> BadImage:
    return BadImage("bmp", _b64(encode(picture(), "BMP")), Repair.FORMAT_TO_RGB)


def tiff() -> BadImage:
    return BadImage("tiff", _b64(encode(picture(), "TIFF")), Repair.FORMAT_TO_RGB)


def rgb_jpeg() -> BadImage:
    """A control: a plain RGB JPEG, stored byte-for-byte."""
    return BadImage("rgb_jpeg", _b64(encode(picture(), "JPEG", quality=90)), Repair.NONE)


def gray_png() -> BadImage:
    """A control: an 8-bit greyscale PNG, stored byte-for-byte."""
    return BadImage("gray_png", _b64(encode(picture("L"), "PNG")), Repair.NONE)


REJECTED_IMAGES = (invalid_base64, empty_payload, zero_size_png, truncated_jpeg, truncated_png, garbage_bytes,
                   decompression_bomb)
REPAIRED_IMAGES = (cmyk_jpeg, gray16_png, rgba_png, la_png, palette_png_transparent, palette_png, webp, gif,
                   bmp, tiff)
CONTROL_IMAGES = (rgb_jpeg, gray_png)


def bad_images(include_controls: bool = False) -> list[BadImage]:
    makers = REJECTED_IMAGES + REPAIRED_IMAGES + (CONTROL_IMAGES if include_controls else ())
    return [make() for make in makers]


def with_image(record: dict, payload: BadImage, index: int = 0) -> dict:
    """A copy of the record whose image[index] is replaced by the payload."""
    out = copy.deepcopy(record)
    out["image"][index] = payload.b64
    return out


# --- record-level problems ---------------------------------------------------------------------------


def missing_question(record: dict) -> BadRecord:
    out = copy.deepcopy(record)
    del out["question"]
    return BadRecord("missing_question", out, Reject.BAD_FIELD)


def null_response(record: dict) -> BadRecord:
    out = copy.deepcopy(record)
    out["response"] = None
    return BadRecord("null_response", out, Reject.BAD_FIELD)


def image_not_list(record: dict) -> BadRecord:
    out = copy.deepcopy(record)
    out["image"] = out["image"][0] if out["image"] else "not a list"
    return BadRecord("image_not_list", out, Reject.BAD_FIELD, "a bare base64 string instead of a list")


def missing_processed_image(record: dict) -> BadRecord:
    """Sandbox outputs show more images than the list holds: the last processed image is dropped."""
    if sum(s.shows_image for s in sandbox_outputs(record["response"])) == 0:
        raise ValueError("needs a record whose response shows at least one processed image")
    out = copy.deepcopy(record)
    out["image"] = out["image"][:-1]
    return BadRecord("missing_processed_image", out, Reject.IMAGE_COUNT_MISMATCH)


def unmapped_code_path(record: dict) -> BadRecord:
    """The first code block also opens an output file that no block of the sample ever produced."""
    m = CODE_BLOCK_RE.search(record["response"] or "")
    if m is None:
        raise ValueError("needs a record with at least one code block")
    ghost = f'reference = Image.open("{OUTPUT_DIR}/never_saved_0f0f0f0f.png")\n'
    at = record["response"].index("```python\n", m.start()) + len("```python\n")
    out = copy.deepcopy(record)
    out["response"] = record["response"][:at] + ghost + record["response"][at:]
    return BadRecord("unmapped_code_path", out, Reject.UNMAPPED_PATH, "a path meaning no image of the sample")


RECORD_PROBLEMS = (missing_question, null_response, image_not_list, missing_processed_image, unmapped_code_path)


def bad_records(record: dict) -> list[BadRecord]:
    """Every record-level problem applied to a valid record with at least one processed image."""
    return [make(record) for make in RECORD_PROBLEMS]
