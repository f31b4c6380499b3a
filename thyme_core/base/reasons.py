"""Reason codes: why a record was dropped or repaired. They land in SQL (`rejects.reason`,
`images.conversion`), so "why did this fail" is one GROUP BY.

A reject drops the whole sample (a sample whose image or path cannot be trusted would teach the model
the wrong thing); a repair keeps it and says what was changed.
"""

from enum import StrEnum


class Reject(StrEnum):
    BAD_FIELD = "bad_field"  # a required field is missing, null, or of the wrong type
    INVALID_BASE64 = "invalid_base64"  # the image string is not valid base64
    MISSING_IMAGE_FILE = "missing_image_file"  # the image value names a file that does not exist
    UNREADABLE_IMAGE_FILE = "unreadable_image_file"  # the named file exists but cannot be read (a folder, no permission)
    EMPTY_IMAGE = "empty_image"  # zero bytes after decoding
    UNKNOWN_FORMAT = "unknown_format"  # bytes are not a supported image format
    TRUNCATED_IMAGE = "truncated_image"  # the image data ends early
    UNDECODABLE_IMAGE = "undecodable_image"  # a known format, but the decoder rejects the data
    DECOMPRESSION_BOMB = "decompression_bomb"  # more pixels than the configured limit
    IMAGE_COUNT_MISMATCH = "image_count_mismatch"  # sandbox outputs showing images != processed images given
    UNMAPPED_PATH = "unmapped_path"  # a path in the text that means no image of the sample
    DUPLICATE_SAMPLE = "duplicate_sample"  # same split, text and images as an earlier sample


class Repair(StrEnum):
    NONE = ""  # stored byte-for-byte
    ALPHA_ON_WHITE = "alpha_on_white"  # RGBA / LA / P-with-transparency composited on white
    CMYK_TO_RGB = "cmyk_to_rgb"
    HIGH_BIT_DEPTH = "high_bit_depth"  # 16-bit (or 32-bit integer) samples scaled to 8 bits
    PALETTE_TO_RGB = "palette_to_rgb"
    FORMAT_TO_RGB = "format_to_rgb"  # WEBP, GIF, BMP, TIFF, ... decoded and stored as PNG / JPEG
    MODE_TO_RGB = "mode_to_rgb"  # any other mode (e.g. 1-bit, YCbCr) converted to RGB


class Rejected(Exception):
    """A record is dropped: `reason` is the code that lands in SQL, `detail` the human-readable why."""

    def __init__(self, reason: Reject, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def require_strings(record: dict | str, keys: tuple[str, ...]) -> dict:
    """The record, checked to be a parsed dict whose `keys` are strings; else Rejected(BAD_FIELD) saying which
    are missing or of which type. A str record is the reader's message for a record it could not parse."""
    if isinstance(record, str):
        raise Rejected(Reject.BAD_FIELD, record)
    missing = [k for k in keys if not isinstance(record.get(k), str)]
    if missing:
        detail = ", ".join(f"{k} is {type(record.get(k)).__name__ if k in record else 'missing'}" for k in missing)
        raise Rejected(Reject.BAD_FIELD, detail)
    return record
