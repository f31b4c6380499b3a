"""Benchmark: the viewer's crop matching (thyme_core/viewer/crops.py) on random crops and zooms of textured scenes.

60 cases: scenes of 500x400 to 2000x1500 px (random colour fields upscaled from 1/16, 1/8 and 1/4 of the size: smooth
to fine texture), a random region of at least 64 px, returned as it is or zoomed 0.5x..4x. For each coarse side
given, CPU ms per case, the cases with no region found, and the largest and mean box error in px. Fine textures
zoomed (the 1/4 scenes) are mostly not found at any coarse side: a region is "no region" rather than a guess.

    .venv/bin/python bench/crop_match_bench.py [--coarse 320 240 200]

The last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from thyme_core.viewer import crops  # noqa: E402


def cases(n: int = 60, seed: int = 12) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]]:
    rng, out = np.random.default_rng(seed), []
    for i in range(n):
        w_, h_ = [(1280, 960), (2000, 1500), (640, 480), (500, 400), (1024, 768)][i % 5]
        f = [16, 8, 4][i % 3]
        scene = Image.fromarray(rng.integers(0, 255, (h_ // f, w_ // f, 3), dtype=np.uint8)).resize((w_, h_), Image.BILINEAR)
        w, h = int(rng.integers(64, w_ // 2)), int(rng.integers(64, h_ // 2))
        x, y = int(rng.integers(0, w_ - w)), int(rng.integers(0, h_ - h))
        zoom = [1, 2, 3, 0.5, 4, 1.5][i % 6]
        crop = scene.crop((x, y, x + w, y + h))
        if zoom != 1:
            crop = crop.resize((max(8, round(w * zoom)), max(8, round(h * zoom))))
        out.append((np.asarray(scene.convert("L")), np.asarray(crop.convert("L")), (x, y, x + w, y + h)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coarse", type=int, nargs="+", default=[320, crops.COARSE_SIDE])
    args = ap.parse_args()
    data, result = cases(), {}
    for side in args.coarse:
        crops.COARSE_SIDE = side
        errors, missed, t0 = [], [], time.process_time()
        for i, (scene, crop, box) in enumerate(data):
            r = crops.locate(scene, crop)
            if r is None:
                missed.append(i)
            else:
                errors.append(max(abs(a - b) for a, b in zip((r.x1, r.y1, r.x2, r.y2), box)))
        result[side] = {"cpu_ms_per_case": round((time.process_time() - t0) * 1000 / len(data), 1),
                        "missed": missed, "max_error_px": max(errors), "mean_error_px": round(float(np.mean(errors)), 2)}
        print(f"coarse {side}: {result[side]}", flush=True)
    print(json.dumps({"cases": len(data), "by_coarse_side": result}))


if __name__ == "__main__":
    main()
