"""Where on the input image a fed-back image came from, found from the pixels alone.

The model's code is not parsed (it may compute its box, rotate, or lie in a comment): the returned image is
matched against the input. A crop or a zoom (a crop resized, uniformly) of the input is a scaled copy of one of
its regions, so normalised cross-correlation (cv2.matchTemplate, TM_CCOEFF_NORMED) of the returned image,
resized to each candidate scale, against the input finds it. Coarse pass: both images shrunk so the input's
longer side is at most 240 px, zoom factors 0.5..16 on a geometric grid; fine pass: factors within 6% of the
best in a window around the coarse hit, the factor chosen at half resolution and the position at up to 480 px
for the window (about a pixel of precision). A hit counts when its score reaches `min_score` (0.85) and the
returned image is not flat (a flat patch matches anywhere). Anything else (a rotation, an enhancement that
changed the pixels, a chart drawn from scratch) is "no region" rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

COARSE_SIDE = 240  # over 60 random crops and zooms, 320 px found nothing 240 missed, at 1.4x the CPU
FINE_SIDE = 480
MIN_SCORE = 0.85
MIN_TEMPLATE = 8  # px: below this a match means little
HALF_MIN_SIDE = 120  # px: a fine window whose half-size scan would be smaller scans every zoom at full size


@dataclass(frozen=True)
class Region:
    x1: int
    y1: int
    x2: int
    y2: int
    score: float  # normalised correlation of the best match, 1.0 = identical
    zoom: float  # returned width / region width

    def as_fractions(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(left, top, width, height) as fractions of the input image (for drawing over it at any size)."""
        return (self.x1 / width, self.y1 / height, (self.x2 - self.x1) / width, (self.y2 - self.y1) / height)


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    return image.astype(np.float32)


def _best(src: np.ndarray, tpl: np.ndarray) -> tuple[float, tuple[int, int]]:
    if tpl.shape[0] > src.shape[0] or tpl.shape[1] > src.shape[1] or min(tpl.shape) < MIN_TEMPLATE:
        return -1.0, (0, 0)
    if float(tpl.std()) < 1.0:
        return -1.0, (0, 0)
    res = cv2.matchTemplate(src, tpl, cv2.TM_CCOEFF_NORMED)
    res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
    _, score, _, loc = cv2.minMaxLoc(res)
    return float(score), loc


def _fit(crop: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The crop shrunk to fit `shape` (every template that fits there is made from it, cheaper than from the
    original) and its scale."""
    c = min(1.0, shape[0] / crop.shape[0], shape[1] / crop.shape[1])
    if c >= 1.0:
        return crop, 1.0
    size = (max(1, round(crop.shape[1] * c)), max(1, round(crop.shape[0] * c)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA), c


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _scan(src: np.ndarray, crop: np.ndarray, zooms, shrink: float) -> tuple[float, float, tuple[int, int]]:
    """(score, zoom, top-left in src) of the best zoom: `crop` resized to (crop size / zoom) * shrink."""
    ch, cw = crop.shape
    best = (-1.0, 1.0, (0, 0))
    for z in zooms:
        w, h = round(cw / z * shrink), round(ch / z * shrink)
        if w < MIN_TEMPLATE or h < MIN_TEMPLATE or w > src.shape[1] or h > src.shape[0]:
            continue
        tpl = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if w < cw else cv2.INTER_LINEAR)
        score, loc = _best(src, tpl)
        if score > best[0]:
            best = (score, z, loc)
    return best


def locate(source: np.ndarray, returned: np.ndarray, min_score: float = MIN_SCORE) -> Region | None:
    """The region of `source` that `returned` is a crop or uniform zoom of, or None. Arrays: HxW or HxWxC uint8."""
    src, crop = _gray(source), _gray(returned)
    sh, sw = src.shape
    if float(crop.std()) < 1.0:
        return None
    shrink = min(1.0, COARSE_SIDE / max(sh, sw))
    small = cv2.resize(src, (max(1, round(sw * shrink)), max(1, round(sh * shrink))), interpolation=cv2.INTER_AREA)
    zooms = [2 ** (k / 4) for k in range(-4, 17)]  # 0.5 .. 16, four steps per octave
    reduced, c = _fit(crop, small.shape)
    score, zoom, (lx, ly) = _scan(small, reduced, zooms, shrink / c)
    if score < min_score - 0.15:  # nothing near a match even coarsely
        return None
    # fine pass at full resolution, in a window around the coarse hit
    w, h = crop.shape[1] / zoom, crop.shape[0] / zoom
    cx, cy = lx / shrink, ly / shrink
    pad = 4 / shrink + 0.1 * max(w, h)
    x0, y0 = max(0, int(cx - pad)), max(0, int(cy - pad))
    x1, y1 = min(sw, int(math.ceil(cx + w * 1.1 + pad))), min(sh, int(math.ceil(cy + h * 1.1 + pad)))
    full = src[y0:y1, x0:x1]
    fshrink = min(1.0, FINE_SIDE / max(full.shape))  # precision: about a pixel in FINE_SIDE of the region
    window = _resized(full, fshrink)
    fine = [zoom * f for f in np.linspace(0.94, 1.06, 9)]
    if max(window.shape) >= 2 * HALF_MIN_SIDE:
        # the zoom at half that resolution (a quarter of the pixels), then the position at full resolution over
        # that zoom and its two neighbours: 9 scans at 1/4 the cost + 3, instead of 9
        hshrink = fshrink / 2
        half = _resized(full, hshrink)
        reduced, c = _fit(crop, half.shape)
        hscore, hzoom, _ = _scan(half, reduced, fine, hshrink / c)
        if hscore > -1.0:
            step = fine[1] / fine[0]
            fine = [hzoom / step, hzoom, hzoom * step]
    reduced, c = _fit(crop, window.shape)
    fscore, fzoom, (fx, fy) = _scan(window, reduced, fine, fshrink / c)
    if fscore >= score:
        score, zoom, lx, ly = fscore, fzoom, fx / fshrink + x0, fy / fshrink + y0
    else:
        lx, ly = lx / shrink, ly / shrink
    if score < min_score:
        return None
    rw, rh = round(crop.shape[1] / zoom), round(crop.shape[0] / zoom)
    x, y = round(lx), round(ly)
    return Region(x, y, x + rw, y + rh, round(float(score), 4), round(float(zoom), 3))
