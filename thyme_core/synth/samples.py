"""One synthetic Thyme sample: scene, question, code rounds actually executed, response, image list.

Image samples are built on a `Ctx` (scene, original JPEG, a Runner that executes each code round) by
`single_round` and `two_round` here and `image_computation` in compute_samples.py; generate.py picks
one from the split name. The split name chooses the family of samples (SPLIT_KINDS):
- single_round (`wo_thinking_thyme_single_round`): one image code round (zoom, rotate or enhance), and
  about 1 in 10 answered directly without code;
- two_round (`2round`): two code rounds; the second works on the first output or on another region;
- computation (`computation`): code that prints a value; text-only (no image) or with an image, in one
  or two rounds (two-round image ones zoom first, then compute).
"""

from __future__ import annotations

import base64
import io
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from thyme_core.synth import text
from thyme_core.synth.codegen import STYLES, ImageJob, image_code, loaded_var, pick
from thyme_core.synth.execute import BlockRun, Runner
from thyme_core.synth.scene import Scene, Target, label, render_scene
from thyme_core.thyme_format import clamp_box

SPLIT_KINDS = {
    "wo_thinking_thyme_single_round": "single_round",
    "2round": "two_round",
    "computation": "computation",
}
KINDS = ("single_round", "two_round", "computation", "zoom")  # zoom: synth/zoom.py, the learning bench's task
JPEG_QUALITY = 90
MAX_ZOOMED_SIDE = 1200


@dataclass
class Sample:
    """A generated sample. `images` are raw bytes: [original, processed 1, processed 2, ...] or []."""

    images: list[bytes]
    question: str
    response: str
    kind: str  # family, e.g. "single_round"
    variant: str  # what the sample does, e.g. "zoom", "rotate+zoom", "text/2"
    answer: str

    def record(self) -> dict:
        """The Hugging Face `datasets` row: image (list of base64 strings), question, response."""
        return {
            "image": [base64.b64encode(b).decode("ascii") for b in self.images],
            "question": self.question,
            "response": self.response,
        }


def kind_of(split: str) -> str:
    """The family for a split name: a released split name, or a family name itself."""
    if split in SPLIT_KINDS:
        return SPLIT_KINDS[split]
    if split in KINDS:
        return split
    known = ", ".join(dict.fromkeys([*SPLIT_KINDS, *KINDS]))
    raise ValueError(f"unknown split {split!r}; known: {known}")


def sample_rng(split: str, index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


@dataclass
class Ctx:
    """Everything the rounds of one image sample share."""

    rng: np.random.Generator
    scene: Scene
    width: int
    height: int
    original: bytes
    question_path: str
    num: str
    runner: Runner
    parts: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)

    def run(self, code: str) -> BlockRun:
        out = self.runner.run(code)
        self.parts.append(text.code_round(code, out.stdout))
        self.images.extend(out.images)
        return out


def new_context(rng: np.random.Generator, width: int, height: int, tmp: str) -> Ctx:
    scene = render_scene(rng, width, height)
    buf = io.BytesIO()
    scene.image.save(buf, "JPEG", quality=JPEG_QUALITY)
    original = buf.getvalue()
    path, num = text.question_path(rng)
    return Ctx(rng, scene, width, height, original, path, num, Runner(tmp, original))


def finish(ctx: Ctx, kind: str, variant: str, body: str, answer: str, letter: str | None) -> Sample:
    question = text.image_question(ctx.rng, body, ctx.question_path, ctx.width, ctx.height)
    reply = text.response(ctx.parts, text.answer_text(ctx.rng, answer, letter))
    return Sample([ctx.original, *ctx.images], question, reply, kind, variant, answer)


# --- asking about a target ----------------------------------------------------------------------------


def where(target: Target) -> str:
    return text.WHERE[target.kind].format(colour=target.colour)


def ask(ctx: Ctx, target: Target) -> tuple[str, str, str | None]:
    """(question body, answer, option letter or None) for reading a target."""
    rng = ctx.rng
    if target.kind == "table":
        name, price = target.prices[int(rng.integers(0, len(target.prices)))]
        answer, q = f"{price:.2f}", f"What is the price of {name} in the small price list?"
        wrong = [f"{p:.2f}" for _, p in target.prices] + [f"{price + 1:.2f}", f"{price * 2:.2f}"]
    else:
        noun = "number" if target.text.isdigit() else "text"
        q = f"What is the {noun} on {where(target)}?"
        answer = target.text
        wrong = [t.text for t in ctx.scene.targets if t.kind != "table"] + [label(rng) for _ in range(4)]
    if rng.random() < 0.5:
        return f"Question: {q}", answer, None
    options, letter = text.options_block(rng, answer, wrong)
    return f"Question: {q}\n{options}", answer, letter


def padded_box(ctx: Ctx, box, lo: float, hi: float, w: int | None = None, h: int | None = None) -> tuple:
    """The box grown by a random margin, then clamped Thyme's way (so clamping again changes nothing)."""
    x1, y1, x2, y2 = box
    size = max(x2 - x1, y2 - y1)
    pad = int(max(3, ctx.rng.uniform(lo, hi) * size))
    pads = [pad + int(ctx.rng.integers(0, pad + 1)) for _ in range(4)]
    grown = (x1 - pads[0], y1 - pads[1], x2 + pads[2], y2 + pads[3])
    return clamp_box(grown, w or ctx.width, h or ctx.height)


def zoom_factor(ctx: Ctx, box) -> int:
    side = max(box[2] - box[0], box[3] - box[1])
    f = int(pick(ctx.rng, (2, 2, 3, 4)))
    while f > 1 and side * f > MAX_ZOOMED_SIDE:
        f -= 1
    return max(f, 2) if side * 2 <= MAX_ZOOMED_SIDE else 1


ENHANCE = {
    "pil": ((("contrast", 3.0),), (("autocontrast", 2),), (("autocontrast", 1), ("threshold", 128)),
            (("contrast", 2.5), ("sharpen", 0)), (("brightness", 1.3), ("contrast", 3.0))),
    "cv2": ((("clahe", 3.0),), (("equalize", 0),), (("threshold", 0),), (("contrast", 2.5),)),
    "np": ((("stretch", 2),), (("contrast", 3.0),), (("stretch", 1), ("threshold", 128))),
}


def steps_for(ctx: Ctx, mode: str, style: str, target: Target, box) -> tuple:
    """The transformation steps after the crop, for a mode: zoom, rotate or enhance."""
    f = zoom_factor(ctx, box)
    zoom = (("zoom", f),) if f > 1 else ()
    if mode == "zoom":
        extra = (("sharpen", 0),) if style != "np" and ctx.rng.random() < 0.15 else ()
        return zoom + extra
    if mode == "rotate":
        turn = (("rotate", -target.angle),)
        return turn + (zoom if ctx.rng.random() < 0.5 else ())
    steps = pick(ctx.rng, ENHANCE[style])
    return steps + (zoom if ctx.rng.random() < 0.5 else ())


def extension(ctx: Ctx, steps) -> str:
    binary = any(name == "threshold" for name, _ in steps)
    return "png" if ctx.rng.random() < (0.8 if binary else 0.4) else "jpg"


def image_job(ctx: Ctx, box, steps, *, style: str, op: str, source: str = "", reuse: str = "",
              from_output: bool = False) -> ImageJob:
    path = source or text.code_path(ctx.rng, ctx.question_path, ctx.num)
    name = text.output_name(ctx.rng, ctx.num, op, extension(ctx, steps))
    return ImageJob(style, tuple(steps), name, box, path, from_output, reuse, (ctx.width, ctx.height))


MODE_OF = {"sign": "zoom", "table": "zoom", "rotated": "rotate", "faint": "enhance"}


# --- single round -------------------------------------------------------------------------------------


def single_round(ctx: Ctx) -> Sample:
    rng = ctx.rng
    target = ctx.scene.targets[int(pick(rng, (0, 0, 1, 2, 2, 3, 3, 4)))]
    body, answer, letter = ask(ctx, target)
    if rng.random() < 0.1:
        ctx.parts.append(f"Looking closely at {where(target)}, I can make out {answer}.")
        return finish(ctx, "single_round", "direct", body, answer, letter)
    mode = MODE_OF[target.kind]
    style = pick(rng, STYLES)
    box = padded_box(ctx, target.box, 0.1, 0.6) if mode != "enhance" else padded_box(ctx, target.box, 0.02, 0.1)
    steps = steps_for(ctx, mode, style, target, box)
    code = image_code(image_job(ctx, box, steps, style=style, op=mode), rng)
    ctx.parts.append(text.intro(rng, mode, target, where(target)))
    ctx.run(code)
    ctx.parts.append(text.observe(rng, where(target), answer, letter))
    return finish(ctx, "single_round", mode, body, answer, letter)


# --- two rounds ---------------------------------------------------------------------------------------


def two_round(ctx: Ctx) -> Sample:
    variant = pick(ctx.rng, ("zoom+enhance", "rotate+zoom", "two_regions", "wide+tight"))
    return {
        "zoom+enhance": _zoom_then_enhance,
        "rotate+zoom": _rotate_then_zoom,
        "two_regions": _two_regions,
        "wide+tight": _wide_then_tight,
    }[variant](ctx)


def _then_on_output(ctx: Ctx, target: Target, first_mode: str, second_mode: str, variant: str) -> Sample:
    """Round 1 crops the target with first_mode; round 2 opens that output and applies second_mode."""
    rng = ctx.rng
    body, answer, letter = ask(ctx, target)
    style = pick(rng, STYLES)
    box = padded_box(ctx, target.box, 0.05, 0.4)
    steps = steps_for(ctx, first_mode, style, target, box)
    if first_mode == "zoom" and not steps:
        steps = (("zoom", 2),)
    ctx.parts.append(text.intro(rng, first_mode, target, where(target)))
    first = ctx.run(image_code(image_job(ctx, box, steps, style=style, op=first_mode), rng))
    ctx.parts.append("\nThe region is larger now, but the characters are still hard to make out. "
                     "I will process this output further.\n")
    style2 = pick(rng, STYLES)
    with Image.open(io.BytesIO(first.images[0])) as im:
        steps2 = steps_for(ctx, second_mode, style2, target, (0, 0, *im.size))  # zoom sized to that output
    if second_mode == "zoom":
        steps2 = (("zoom", 2),)
    job = image_job(ctx, None, steps2, style=style2, op=second_mode, source=first.image_names[0],
                    from_output=True)
    ctx.run(image_code(job, rng))
    ctx.parts.append(text.observe(rng, where(target), answer, letter))
    return finish(ctx, "two_round", variant, body, answer, letter)


def _zoom_then_enhance(ctx: Ctx) -> Sample:
    return _then_on_output(ctx, ctx.scene.first("faint"), "zoom", "enhance", "zoom+enhance")


def _rotate_then_zoom(ctx: Ctx) -> Sample:
    target = ctx.scene.first("rotated")
    return _then_on_output(ctx, target, "rotate", "zoom", "rotate+zoom")


def _two_regions(ctx: Ctx) -> Sample:
    """Two signs read in two rounds; the second crops the original again (often reusing its variable)."""
    rng = ctx.rng
    a, b = ctx.scene.of_kind("sign")
    q = f"Question: What is written on the {a.colour} sign and on the {b.colour} sign? Answer as 'X and Y'."
    answer = f"{a.text} and {b.text}"
    style = pick(rng, STYLES)
    for i, target in enumerate((a, b)):
        box = padded_box(ctx, target.box, 0.1, 0.6)
        steps = steps_for(ctx, "zoom", style, target, box)
        reuse = loaded_var(style) if i == 1 and rng.random() < 0.6 else ""
        job = image_job(ctx, box, steps, style=style, op="zoom", reuse=reuse)
        ctx.parts.append(text.intro(rng, "zoom", target, where(target)) if i == 0 else
                         f"\nNext, {where(target)}.\n")
        ctx.run(image_code(job, rng))
        ctx.parts.append(f"{where(target)[0].upper()}{where(target)[1:]} reads {target.text}.")
    return finish(ctx, "two_round", "two_regions", q, answer, None)


def _wide_then_tight(ctx: Ctx) -> Sample:
    """Round 1 zooms a wide area; round 2 crops the sign out of that zoomed output and zooms again."""
    rng = ctx.rng
    target = ctx.scene.first("sign")
    body, answer, letter = ask(ctx, target)
    style = pick(rng, STYLES)
    wide = padded_box(ctx, target.box, 1.0, 2.0)
    f = zoom_factor(ctx, wide)
    ctx.parts.append(text.intro(rng, "zoom", target, where(target)))
    first = ctx.run(image_code(image_job(ctx, wide, (("zoom", f),) if f > 1 else (), style=style,
                                         op="zoom"), rng))
    ow, oh = (wide[2] - wide[0]) * max(f, 1), (wide[3] - wide[1]) * max(f, 1)
    x1, y1, x2, y2 = ((v - o) * max(f, 1) for v, o in zip(target.box, wide[:2] * 2))
    tight = padded_box(ctx, (x1, y1, x2, y2), 0.1, 0.3, ow, oh)
    ctx.parts.append("\nThe sign is visible in the enlarged area but still small. I will crop it from this "
                     "output and enlarge it again.\n")
    style2 = pick(rng, STYLES)
    job = image_job(ctx, tight, (("zoom", 2),), style=style2, op="zoom", source=first.image_names[0],
                    from_output=True)
    ctx.run(image_code(job, rng))
    ctx.parts.append(text.observe(rng, where(target), answer, letter))
    return finish(ctx, "two_round", "wide+tight", body, answer, letter)
