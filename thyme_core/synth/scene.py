"""Synthetic scenes: real pictures whose questions need a zoom, a rotation or a contrast boost to answer.

A scene is a noisy gradient background with large soft shapes, plus a few small *targets* placed in
separate cells of a grid so they never overlap:
- `sign`: a small coloured plate with a short label (a number or a word), too small to read unzoomed;
- `rotated`: a label printed on a plate that was turned by some angle (90, 180 or a slanted one);
- `faint`: a label whose ink differs from its plate by only a few grey levels (needs enhancement);
- `table`: a tiny price list (item and price per line) for computation questions.
Everything is drawn with PIL and numpy from a seeded numpy Generator, so a scene is a pure function of
its seed and size. Each target records its bounding box, so response code can crop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIGN_COLOURS = {
    "red": (200, 35, 35),
    "blue": (35, 70, 190),
    "green": (30, 140, 60),
    "orange": (235, 130, 20),
    "purple": (120, 50, 150),
    "black": (25, 25, 25),
    "yellow": (235, 205, 40),
    "white": (245, 245, 245),
}
WORDS = ("EXIT", "STOP", "GATE", "OPEN", "PARK", "CAFE", "HOTEL", "BANK", "TAXI", "DOCK", "LAB", "NORTH")
ITEMS = ("apple", "pear", "milk", "bread", "eggs", "tea", "rice", "soap", "jam", "cheese", "coffee", "juice")
ROTATIONS = (90, -90, 180, 30, -30, 45, -45, 20, -20)


@dataclass(frozen=True)
class Target:
    """A small thing in the scene that a question can ask about."""

    kind: str  # "sign", "rotated", "faint" or "table"
    text: str  # what it says (for a table: its lines joined by "\n")
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the scene, tight around the plate
    colour: str = ""  # colour name of the plate
    angle: int = 0  # degrees counter-clockwise the plate was turned ("rotated" only)
    prices: tuple[tuple[str, float], ...] = ()  # ("table" only)


@dataclass
class Scene:
    image: Image.Image
    targets: list[Target] = field(default_factory=list)

    def first(self, kind: str) -> Target:
        return next(t for t in self.targets if t.kind == kind)

    def of_kind(self, kind: str) -> list[Target]:
        return [t for t in self.targets if t.kind == kind]


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled FreeType font: the same glyphs on every machine with this Pillow version.
    return ImageFont.load_default(size=size)


def label(rng: np.random.Generator) -> str:
    """A short label: mostly numbers (easy to grade), sometimes a word or a code like 'B-12'."""
    r = rng.random()
    if r < 0.55:
        return str(int(rng.integers(10, 1000)))
    if r < 0.8:
        return str(rng.choice(WORDS))
    return f"{chr(65 + int(rng.integers(0, 26)))}-{int(rng.integers(1, 100))}"


def render_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Draw a scene with two signs, one rotated label, one faint label and one price table."""
    scale = min(width, height) / 800
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    _soft_shapes(rng, draw, width, height)
    cells = _cells(rng, width, height, cols=3, rows=2)
    targets = []
    colours = rng.permutation(list(SIGN_COLOURS))[:2]
    for colour in colours:
        targets.append(_sign(rng, image, cells.pop(), scale, str(colour)))
    targets.append(_rotated(rng, image, cells.pop(), scale))
    targets.append(_faint(rng, image, cells.pop(), scale))
    targets.append(_table(rng, image, cells.pop(), scale))
    _distractors(rng, draw, cells.pop(), scale)
    return Scene(_add_noise(rng, image), targets)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A linear two-colour gradient in a random direction (drawn small, then resized: it is smooth)."""
    a, b = rng.integers(60, 230, size=(2, 3))
    angle = rng.uniform(0, np.pi)
    sw, sh = max(2, width // 16), max(2, height // 16)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    t = xs * np.cos(angle) / sw + ys * np.sin(angle) / sh
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    rgb = a[None, None, :] + (b - a)[None, None, :] * t[..., None]
    small = Image.fromarray(rgb.astype(np.uint8), "RGB")
    return small.resize((width, height), Image.Resampling.BILINEAR)


def _soft_shapes(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(int(c) for c in rng.integers(40, 240, size=3))
        x1, x2 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y1, y2 = sorted(int(v) for v in rng.integers(0, height, size=2))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.rectangle((x1, y1, x2, y2), fill=colour)
        elif shape == 1:
            draw.ellipse((x1, y1, x2, y2), fill=colour)
        else:
            pts = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(3)]
            draw.polygon(pts, fill=colour)


def _cells(rng: np.random.Generator, width: int, height: int, cols: int, rows: int) -> list[tuple]:
    cw, ch = width // cols, height // rows
    cells = [(c * cw, r * ch, (c + 1) * cw, (r + 1) * ch) for r in range(rows) for c in range(cols)]
    order = rng.permutation(len(cells))
    return [cells[i] for i in order]


def _place(rng: np.random.Generator, cell: tuple, w: int, h: int) -> tuple[int, int]:
    """Top-left corner for a w x h patch inside the cell, a small margin from its edges."""
    x1, y1, x2, y2 = cell
    margin = 4
    hi_x = max(x1 + margin, x2 - w - margin)
    hi_y = max(y1 + margin, y2 - h - margin)
    return int(rng.integers(x1 + margin, hi_x + 1)), int(rng.integers(y1 + margin, hi_y + 1))


def _plate(text: str, size: int, fill, ink) -> Image.Image:
    f = font(size)
    left, top, right, bottom = f.getbbox(text)
    pad = max(2, size // 3)
    plate = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), fill)
    ImageDraw.Draw(plate).text((pad - left, pad - top), text, font=f, fill=ink)
    return plate


def _text_size(rng: np.random.Generator, scale: float) -> int:
    return max(8, int(round(rng.integers(11, 16) * scale)))


def _sign(rng, image: Image.Image, cell: tuple, scale: float, colour: str) -> Target:
    text = label(rng)
    fill = SIGN_COLOURS[colour]
    ink = (20, 20, 20) if sum(fill) > 500 else (250, 250, 250)
    plate = _plate(text, _text_size(rng, scale), fill, ink)
    x, y = _place(rng, cell, *plate.size)
    image.paste(plate, (x, y))
    return Target("sign", text, (x, y, x + plate.width, y + plate.height), colour)


def _rotated(rng, image: Image.Image, cell: tuple, scale: float) -> Target:
    text = label(rng)
    colour = str(rng.choice(["white", "yellow"]))
    plate = _plate(text, _text_size(rng, scale) + 2, SIGN_COLOURS[colour], (20, 20, 20))
    angle = int(rng.choice(ROTATIONS))
    mask = Image.new("L", plate.size, 255).rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    turned = plate.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    x, y = _place(rng, cell, *turned.size)
    image.paste(turned, (x, y), mask)
    return Target("rotated", text, (x, y, x + turned.width, y + turned.height), colour, angle)


def _faint(rng, image: Image.Image, cell: tuple, scale: float) -> Target:
    text = label(rng)
    grey = int(rng.integers(90, 170))
    delta = int(rng.integers(9, 16)) * int(rng.choice([-1, 1]))
    plate = _plate(text, _text_size(rng, scale) + 4, (grey,) * 3, (grey + delta,) * 3)
    x, y = _place(rng, cell, *plate.size)
    image.paste(plate, (x, y))
    return Target("faint", text, (x, y, x + plate.width, y + plate.height), "grey")


def _table(rng, image: Image.Image, cell: tuple, scale: float) -> Target:
    names = rng.choice(ITEMS, size=3, replace=False)
    prices = tuple((str(n), float(rng.integers(5, 200)) / 4) for n in names)
    lines = [f"{n} {p:.2f}" for n, p in prices]
    f = font(_text_size(rng, scale))
    pad, gap = 4, 2
    boxes = [f.getbbox(line) for line in lines]
    line_h = max(b[3] for b in boxes) + gap
    w = max(b[2] for b in boxes) + 2 * pad
    h = line_h * len(lines) + 2 * pad
    plate = Image.new("RGB", (w, h), (250, 248, 235))
    d = ImageDraw.Draw(plate)
    for i, line in enumerate(lines):
        d.text((pad, pad + i * line_h), line, font=f, fill=(15, 15, 15))
    d.rectangle((0, 0, w - 1, h - 1), outline=(60, 60, 60))
    x, y = _place(rng, cell, w, h)
    image.paste(plate, (x, y))
    return Target("table", "\n".join(lines), (x, y, x + w, y + h), "cream", prices=prices)


def _distractors(rng, draw: ImageDraw.ImageDraw, cell: tuple, scale: float) -> None:
    x1, y1, x2, y2 = cell
    for _ in range(int(rng.integers(3, 8))):
        r = max(3, int(rng.integers(6, 20) * scale))
        cx, cy = int(rng.integers(x1 + r, max(x1 + r + 1, x2 - r))), int(rng.integers(y1 + r, max(y1 + r + 1, y2 - r)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(0, 0, 0))


def _add_noise(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Luminance noise of +-5 levels, in uint8 throughout (clip first so the sum cannot wrap)."""
    arr = np.asarray(image).copy()
    np.clip(arr, 5, 245, out=arr)
    arr += rng.integers(0, 11, size=(*arr.shape[:2], 1), dtype=np.uint8)
    arr -= 5
    return Image.fromarray(arr, "RGB")
