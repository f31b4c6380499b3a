"""The zoom task: a small coloured square somewhere in a large grey picture; "what colour is it?".

Built so that looking closer is needed and a small model can still learn it in CPU minutes (bench/learn_cpu.py):
- the picture is 448x448; a model that sees it at the learn model's 112x112 (16 image tokens) sees the 10 px
  square as 2-3 px inside one 14 px patch, among grey blobs and noise; after the crop and zoom below it fills
  the middle 35x35 px of a 56x56 image;
- the place is findable by code: the square is the only saturated thing, so one fixed program finds it (HSV
  saturation above 100), crops 16x16 around it, zooms to 56x56 (the learn model's smallest image: 4 image
  tokens, each about 40% the square's colour), saves and prints the path; the response's code is always that
  program, really run here (execute.Runner), and its output is the response's second image;
- four colours, always offered in the same order (A red, B green, C blue, D yellow), so chance is 25%.

Three forms of the same samples: Thyme SFT records (generate.generate_sample with split "zoom"), RL records in
the released form (rl.rl_record over them) and a VLMEvalKit TSV (`write_zoom_benchmark`). The question is the
benchmark's multiple-choice prompt (BenchRow.prompt) in the shared user turn (agent.prompt.user_turn), so the SFT
example, the RL prompt and the evaluation prompt show the same words.
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from thyme_core.agent.prompt import user_turn
from thyme_core.eval.benchmarks import BenchRow, write_tsv
from thyme_core.synth.execute import Runner
from thyme_core.synth.samples import Sample, sample_rng

SPLIT = "zoom"
SIZE = 448
SQUARE = 10
MARGIN = 40  # the crop around the square stays well inside the picture
COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (220, 200, 40)}
OPTIONS = dict(zip("ABCD", COLOURS))
QUESTION = "What colour is the small square?"
OUTPUT = "/mnt/data/temp_processed_images/zoom.png"
CODE = f"""```python
import numpy as np
from PIL import Image
img = Image.open(image_path)
s = np.asarray(img.convert("HSV"))[:, :, 1]
y, x = np.argwhere(s > 100).mean(0).astype(int)
path = "{OUTPUT}"
img.crop((x - 8, y - 8, x + 8, y + 8)).resize((56, 56)).save(path)
print(path)
```"""


def scene(rng: np.random.Generator, size: int = SIZE) -> tuple[Image.Image, str, tuple[int, int]]:
    """(picture, colour name, square centre): a grey gradient with grey blobs and noise, one coloured square."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b, c = rng.uniform(110, 190), rng.uniform(-40, 40), rng.uniform(-40, 40)
    grey = a + b * xs + c * ys + rng.normal(0, 6, (size, size))
    rgb = np.repeat(grey[:, :, None], 3, axis=2) + rng.normal(0, 3, (size, size, 3))
    im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 9))):  # grey distractors: the same size and larger, never saturated
        v, r = int(rng.integers(60, 230)), int(rng.integers(5, 30))
        x, y = (int(t) for t in rng.integers(0, size, 2))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=(v, v, v))
    im = im.filter(ImageFilter.GaussianBlur(0.6))
    colour = list(COLOURS)[int(rng.integers(0, len(COLOURS)))]
    cx, cy = (int(t) for t in rng.integers(MARGIN, size - MARGIN, 2))
    half = SQUARE // 2
    ImageDraw.Draw(im).rectangle((cx - half, cy - half, cx + half - 1, cy + half - 1), fill=COLOURS[colour])
    return im, colour, (cx, cy)


def bench_row(index: int, colour: str, image: bytes) -> BenchRow:
    letter = "ABCD"[list(COLOURS).index(colour)]
    return BenchRow(str(index), QUESTION, dict(OPTIONS), letter, SPLIT, "", base64.b64encode(image).decode())


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def zoom_sample(index: int, seed: int = 0, size: int = SIZE) -> Sample:
    """Sample `index`: the picture, the question with its image lines, the executed code and the answer."""
    rng = sample_rng(SPLIT, index, seed)
    im, colour, _ = scene(rng, size)
    original = _jpeg(im)
    row = bench_row(index, colour, original)
    question = user_turn(row.prompt(), f"/data/user_images/zoom_{seed}_{index}.jpg", size, size)
    with tempfile.TemporaryDirectory(prefix="thyme-zoom-") as tmp:
        runner = Runner(Path(tmp), original)
        runner.namespace["image_path"] = str(runner.input_path)  # as the sandbox binds it
        out = runner.run(CODE.removeprefix("```python\n").removesuffix("```"))
    if out.stdout != OUTPUT or len(out.images) != 1:
        raise RuntimeError(f"zoom sample {index}: the program printed {out.stdout!r}")
    response = (f"<think>The square is too small to see. I will find it and zoom in.\n<code>\n{CODE}\n</code>\n"
                f"<sandbox_output>{OUTPUT}</sandbox_output>\nThe square is {colour}.</think>\n"
                f"<answer>{row.answer}</answer>")
    return Sample([original, *out.images], question, response, SPLIT, colour, row.answer)


def write_zoom_benchmark(path: str | Path, n: int, seed: int = 0, size: int = SIZE) -> Path:
    """A VLMEvalKit TSV of n zoom questions (the pictures of seed `seed`; use another seed than the training
    data's for a held-out set)."""
    rows = []
    for i in range(n):
        im, colour, _ = scene(sample_rng(SPLIT, i, seed), size)
        rows.append(bench_row(i, colour, _jpeg(im)))
    write_tsv(Path(path), rows)
    return Path(path)
