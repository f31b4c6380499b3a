"""The only files the viewer reads for a request: images of the home's image store, by their stored path.

A path is served when, and only when, it is `images/<2 hex>/<64 hex>.<png|jpg|jpeg|webp|gif>` (the store's own
naming, images.ImageStore), its 2-hex folder is the name's prefix, and the file it resolves to (symlinks
followed) is a regular file inside the store's real folder. So `..`, absolute paths, encoded separators, other
files of the home and symlinks leading out of the store are all refused, whatever the request says.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from thyme_core.base.home import DataHome

_STORED = re.compile(r"images/([0-9a-f]{2})/([0-9a-f]{64})\.(png|jpg|jpeg|webp|gif)")
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
                 "gif": "image/gif"}


def safe_path(rel: str) -> bool:
    """Whether `rel` has the image store's form (no filesystem access).

    >>> safe_path("images/ab/" + "ab" * 32 + ".png"), safe_path("images/ab/../../catalog.duckdb")
    (True, False)
    """
    m = _STORED.fullmatch(rel or "")
    return bool(m) and m.group(2).startswith(m.group(1))


def resolve(home: DataHome, rel: str) -> Path | None:
    """The file of a stored image, or None when `rel` is not one (see the module docstring)."""
    if not safe_path(rel):
        return None
    store = Path(home.images_dir).resolve()
    try:
        real = (Path(home.root) / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(store) or not real.is_file():
        return None
    return real


def content_type(path: Path) -> str:
    return CONTENT_TYPES[path.suffix.lstrip(".").lower()]


def load_gray(path: Path) -> np.ndarray:
    """The image as HxW uint8 grey levels (what crop matching reads): OpenCV's decoder, which is faster than
    PIL's and skips the colour conversion, with EXIF orientation ignored as PIL and the page's size do; PIL for
    what OpenCV cannot read."""
    import cv2

    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if gray is not None:
        return gray
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))
