"""Decode, check and store the images of Thyme samples.

Each image arrives as bytes (images/values.py resolves base64, paths and HF Image structs). We sniff the real format from its magic bytes, check it
(size, pixel limit, truncation) and store it once under the sha256 of the stored bytes, atomically.

JPEG and 8-bit PNG that are already RGB or L are stored byte-for-byte: no re-encode, so they are lossless
and about 5x faster than decode + convert + save. Only what needs it is converted (Repair codes say how):
alpha, LA and palette-with-transparency are composited on white; CMYK, 16-bit, palette and other modes go
to RGB; WEBP, GIF, BMP and TIFF are decoded and stored as PNG (JPEG sources as JPEG quality 95).

Checks. `verify="structure"` (default) parses the header and the container's end marker: a JPEG must end
with EOI (else it is fully decoded, which accepts files with trailing metadata and rejects truncated ones),
a PNG must pass PIL's chunk/CRC verification. `verify="decode"` also decodes every JPEG (DCT-scaled, 1/8)
for data corruption inside the entropy-coded stream, at about 3x the cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from thyme_core.base.errors import BadParameter
from thyme_core.base.fsio import write_once
from thyme_core.base.reasons import Reject, Rejected, Repair

# Our own per-call pixel limit (ImageConfig.max_pixels) replaces PIL's process-wide one, which would
# otherwise refuse images above 2x89 Mpx even when a user raises the limit.
Image.MAX_IMAGE_PIXELS = None

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_KEEP_MODES = ("RGB", "L")
_EXT = {"JPEG": "jpg", "PNG": "png"}


@dataclass(frozen=True)
class ImageConfig:
    max_pixels: int = 100_000_000  # decompression-bomb limit: width * height above this is rejected
    verify: str = "structure"  # "structure" or "decode" (see module docstring)
    jpeg_quality: int = 95  # only for converted JPEG sources (CMYK)

    def __post_init__(self):
        if self.verify not in ("structure", "decode"):
            raise BadParameter(f"verify must be 'structure' or 'decode', not {self.verify!r}")
        if self.max_pixels <= 0:
            raise BadParameter(f"max_pixels must be positive, not {self.max_pixels}")


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to store: the exact bytes and what they are."""

    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    repair: Repair
    source_format: str

    @property
    def relpath(self) -> str:
        return f"images/{self.sha256[:2]}/{self.sha256}.{_EXT[self.format]}"


def decode_base64(text: str) -> bytes:
    if not isinstance(text, str):
        raise Rejected(Reject.BAD_FIELD, f"image entry is {type(text).__name__}, not a base64 string")
    if text.startswith("data:") and "," in text[:100]:
        text = text.split(",", 1)[1]  # tolerate data URIs
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # wrapped base64 (MIME line breaks) is still base64
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Rejected(Reject.INVALID_BASE64, str(exc)) from None
    if not data:
        raise Rejected(Reject.EMPTY_IMAGE, "zero bytes after base64 decoding")
    return data


def sniff(data: bytes) -> str:
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise Rejected(Reject.UNKNOWN_FORMAT, f"not a supported image (first bytes {data[:8].hex()})")


def prepare_image(data: bytes, config: ImageConfig = ImageConfig()) -> PreparedImage:
    """Check one image's bytes and return what to store, converting only when needed."""
    fmt = sniff(data)
    if fmt == "PNG" and len(data) >= 24 and (data[16:20] == b"\0\0\0\0" or data[20:24] == b"\0\0\0\0"):
        raise Rejected(Reject.EMPTY_IMAGE, "PNG header declares a zero width or height")
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise Rejected(Reject.DECOMPRESSION_BOMB, str(exc)) from None
    except Exception as exc:  # PIL raises many types for bad headers
        raise _decode_error(fmt, exc) from None
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise Rejected(Reject.EMPTY_IMAGE, f"{fmt} header declares {w}x{h}")
        if w * h > config.max_pixels:
            raise Rejected(
                Reject.DECOMPRESSION_BOMB, f"{fmt} {w}x{h} = {w * h} px > limit {config.max_pixels}"
            )
        if _storable_as_is(fmt, im, data):
            _check_as_is(fmt, im, data, config)
            return PreparedImage(data, hashlib.sha256(data).hexdigest(), fmt, w, h, Repair.NONE, fmt)
        return _convert(fmt, im, data, config)


def _storable_as_is(fmt: str, im: Image.Image, data: bytes) -> bool:
    if im.mode not in _KEEP_MODES or "transparency" in im.info:
        return False
    if fmt == "JPEG":
        return True
    # PNG IHDR: bit depth is byte 24. PIL reports 16-bit RGB as "RGB", so look at the header itself.
    return fmt == "PNG" and len(data) > 24 and data[24] == 8


def _check_as_is(fmt: str, im: Image.Image, data: bytes, config: ImageConfig) -> None:
    try:
        if fmt == "PNG":
            im.verify()  # walks every chunk and checks its CRC; a cut file fails here
        elif config.verify == "decode":
            im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        elif data.rfind(b"\xff\xd9", max(0, len(data) - 64)) == -1:
            # No EOI at the end: truncated, or trailing metadata after EOI. Decoding tells which.
            im.load()
    except Exception as exc:
        raise _decode_error(fmt, exc) from None


def _convert(fmt: str, im: Image.Image, data: bytes, config: ImageConfig) -> PreparedImage:
    png_depth = data[24] if fmt == "PNG" and len(data) > 24 else 8
    try:
        im.load()
        rgb, repair = _to_rgb(fmt, im, png_depth)
    except Exception as exc:
        raise _decode_error(fmt, exc) from None
    out = io.BytesIO()
    stored_fmt = "JPEG" if fmt == "JPEG" else "PNG"
    if stored_fmt == "JPEG":
        rgb.save(out, "JPEG", quality=config.jpeg_quality)
    else:
        rgb.save(out, "PNG", compress_level=3)
    data = out.getvalue()
    return PreparedImage(
        data, hashlib.sha256(data).hexdigest(), stored_fmt, rgb.width, rgb.height, repair, fmt
    )


def _to_rgb(fmt: str, im: Image.Image, png_depth: int) -> tuple[Image.Image, Repair]:
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), Repair.ALPHA_ON_WHITE
    if fmt not in ("JPEG", "PNG"):
        return _high_bit_depth_to_rgb(im) if mode.startswith("I") else im.convert("RGB"), Repair.FORMAT_TO_RGB
    if mode == "CMYK":
        return im.convert("RGB"), Repair.CMYK_TO_RGB
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_rgb(im), Repair.HIGH_BIT_DEPTH
    if png_depth == 16:  # 16-bit RGB PNG, already reduced to 8 bits by PIL
        return im.convert("RGB"), Repair.HIGH_BIT_DEPTH
    if mode == "P":
        return im.convert("RGB"), Repair.PALETTE_TO_RGB
    if mode in _KEEP_MODES:
        return im.convert("RGB"), Repair.FORMAT_TO_RGB
    return im.convert("RGB"), Repair.MODE_TO_RGB


def _high_bit_depth_to_rgb(im: Image.Image) -> Image.Image:
    import numpy as np

    arr = np.asarray(im)
    if im.mode == "F":
        scaled = np.clip(arr, 0, 255)
    else:  # I;16* and I (how PIL opens 16-bit grayscale PNG): 0..65535 -> 0..255
        scaled = np.clip(arr.astype(np.float64) / 257.0, 0, 255)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L").convert("RGB")


def _decode_error(fmt: str, exc: Exception) -> Rejected:
    text = f"{fmt}: {type(exc).__name__}: {exc}"
    if isinstance(exc, EOFError) or "truncat" in str(exc).lower():
        return Rejected(Reject.TRUNCATED_IMAGE, text)
    return Rejected(Reject.UNDECODABLE_IMAGE, text)


class ImageStore:
    """Content-addressed image folder under the data home: images/ab/<sha256>.<ext>, written once."""

    def __init__(self, root: Path, tmp_dir: Path):
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir)

    def put(self, image: PreparedImage) -> bool:
        """Store the image unless it is there. Returns True when this call wrote it."""
        return write_once(self.root / image.relpath, image.data, self.tmp_dir)
