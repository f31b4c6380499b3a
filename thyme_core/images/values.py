"""Image values as users ship them, resolved to bytes at prepare time.

Thyme's own data holds base64 strings, but the same columns arrive in other forms: the released RL data and
most hand-made JSONL name files (`"images": ["/path/to/image.jpg"]`), and a Parquet export written by HF
`datasets` holds its `Image` feature as a struct `{bytes, path}`. Each value is classified on its own (one
record may mix forms), in this order:

1. a dict `{bytes, path}` (HF `Image`): its bytes when present, else its path (rule 4);
2. raw bytes: the image itself;
3. a string starting with `data:`: a data URI, its payload base64;
4. a string that names a file: `file://` URIs, `~`, `./`, `../`, anything ending in a file extension
   (base64 never holds a `.`), an absolute path holding a character base64 never has; or a short string in the
   base64 alphabet that names an existing file. Relative paths are taken from the data file's folder (the
   way a dataset folder is laid out), `~` is expanded;
5. any other string: base64 (wrapped lines tolerated).

A path that does not exist is Reject.MISSING_IMAGE_FILE, one that cannot be read (a folder, no permission)
Reject.UNREADABLE_IMAGE_FILE: the record is rejected with that reason, never the run, never silently. The
bytes then go through the same checks as any image (store.prepare_image) and are stored by their sha256, so
the catalog never points at the user's files, only at the home's store.

`fetch` lets a remote source supply a relative path that is not on disk: it gets the path relative to the data
file's folder and returns a local file (the HF Hub: its cache) or the bytes themselves (S3), or None when the
source has no such file (it may also raise Rejected with its own reason).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from thyme_core.base.reasons import Reject, Rejected
from thyme_core.images.store import ImageConfig, PreparedImage, decode_base64, prepare_image

_EXTENSION = re.compile(r"\.[A-Za-z0-9]{2,5}$")
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s]*$")
_PATH_PREFIXES = ("file://", "~", "./", "../", ".\\", "..\\")
_SHORT = 4096  # a base64 image is far longer than any path
Fetch = Callable[[str], "Path | bytes | None"]


def classify(value, base: Path | None = None) -> str:
    """The form of one image value: "bytes", "base64", "path" or "struct" (HF Image {bytes, path}).

    >>> classify("/9j/4AAQSkZJRg=="), classify("/data/img/001.jpg"), classify("data:image/png;base64,iVBO")
    ('base64', 'path', 'base64')
    >>> classify({"bytes": None, "path": "a.png"}), classify("file:///tmp/x"), classify("~/x")
    ('struct', 'path', 'path')
    """
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if not isinstance(value, str):
        return "other"
    text = value.strip()
    if text.startswith("data:"):
        return "base64"
    if text.startswith(_PATH_PREFIXES) or (len(text) < _SHORT and _EXTENSION.search(text)):
        return "path"
    if len(text) < _SHORT and text and not _BASE64_CHARS.match(text) and text.startswith(("/", "\\")):
        return "path"
    if 0 < len(text) < _SHORT and "\n" not in text and _exists(_local_path(text, base)):
        return "path"
    return "base64"


def load_bytes(value, base: Path | None = None, fetch: Fetch | None = None) -> bytes:
    """The image bytes a value means, or Rejected with the reason (see the module docstring)."""
    form = classify(value, base)
    if form == "struct":
        data, path = value.get("bytes"), value.get("path")
        if data:
            return bytes(data)
        if isinstance(path, str) and path:
            return _read(path, base, fetch)
        raise Rejected(Reject.EMPTY_IMAGE, "image struct has neither bytes nor a path")
    if form == "bytes":
        if not value:
            raise Rejected(Reject.EMPTY_IMAGE, "zero bytes")
        return bytes(value)
    if form == "path":
        return _read(value.strip(), base, fetch)
    if form == "base64":
        return decode_base64(value)
    raise Rejected(Reject.BAD_FIELD, f"image entry is {type(value).__name__}, not base64, a path or bytes")


def prepare_values(entries: list, config: ImageConfig = ImageConfig(), base: Path | None = None,
                   fetch: Fetch | None = None) -> list[PreparedImage]:
    """A sample's image list, each value resolved and checked; the first bad one rejects the sample with its
    index in the detail. Nothing is written here: a rejected sample leaves no orphan in the store."""
    prepared = []
    for i, entry in enumerate(entries):
        try:
            prepared.append(prepare_image(load_bytes(entry, base, fetch), config))
        except Rejected as exc:
            raise Rejected(exc.reason, f"image[{i}]: {exc.detail}") from None
    return prepared


def as_list(value) -> list | None:
    """An image column's cell as a list of values: a list stays, one HF Image struct or bytes value (a
    `datasets` column of type Image) becomes a list of one, null stays None (a text-only sample). A bare string
    stays as it is (the caller rejects it): a string where a list belongs is more often a broken export than
    one image."""
    if isinstance(value, (dict, bytes, bytearray)):
        return [value]
    return value


def _local_path(text: str, base: Path | None) -> Path:
    if text.startswith("file://"):
        parsed = urlparse(text)
        local = not parsed.netloc or parsed.netloc == "localhost"
        text = unquote(parsed.path if local else f"//{parsed.netloc}{parsed.path}")
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _read(text: str, base: Path | None, fetch: Fetch | None) -> bytes:
    path = _local_path(text, base)
    if not path.exists() and fetch is not None and not Path(text).expanduser().is_absolute() \
            and not text.startswith("file://"):
        fetched = fetch(text)
        if isinstance(fetched, bytes):
            if not fetched:
                raise Rejected(Reject.EMPTY_IMAGE, f"{text}: the object is empty")
            return fetched
        if fetched is not None:
            path = Path(fetched)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Rejected(Reject.MISSING_IMAGE_FILE, f"{text}: no such file (looked at {path})") from None
    except (OSError, ValueError) as exc:
        raise Rejected(Reject.UNREADABLE_IMAGE_FILE, f"{text}: cannot read {path} "
                                                     f"({getattr(exc, 'strerror', None) or exc})") from None
    if not data:
        raise Rejected(Reject.EMPTY_IMAGE, f"{path}: the file is empty")
    return data
