"""The words around the code: Thyme-style questions, image-path lines, reasoning sentences and answers.

Questions carry `<image>`, the question, optional lettered options, then the `User Image Path` and
`User Image Size` lines in one of the decorations the released data uses (plain, `**...:**`,
`### ...:**`, quoted or not), then the fixed output-format instructions. Text-only questions have no
image lines. Responses are `<think>` with code rounds and sandbox outputs, then `<answer>`.
"""

from __future__ import annotations

import numpy as np

from thyme_core.synth.codegen import pick
from thyme_core.thyme_format import FORMAT_FOOTER

# (prefix, suffix) around the field name: `User Image Path: "..."`, `**User Image Path:** "..."`, ...
DECORATIONS = (("", ":"), ("**", ":**"), ("### ", ":**"))
SOURCES = (
    "cauldron_dvqa_images_dvqa",
    "cauldron_textvqa_images",
    "cauldron_chartqa_images",
    "docvqa_train",
    "visual_genome_vg",
    "textcaps_train",
    "st_vqa_coco",
    "infographicvqa",
)
QUESTION_ROOTS = ("/mllm_hdd/yfzhang/data/temp_processed_images", "/mllm_hdd/yfzhang/data/images", "/data/user_images")
STALE_PATHS = ("/eval/{id}.jpg", "image.jpg", "/mnt/data/{id}.png", "/tmp/input_{id}.jpg", "test.png", "/data/{id}.jpg")


def hex_id(rng: np.random.Generator, n: int = 8) -> str:
    return "".join("0123456789abcdef"[int(v)] for v in rng.integers(0, 16, size=n))


def question_path(rng: np.random.Generator) -> tuple[str, str]:
    """(the path the question shows for the original, its numeric id used in file names)."""
    num = str(int(rng.integers(10_000, 100_000_000))).zfill(8)
    ext = "png" if rng.random() < 0.25 else "jpg"
    return f"{pick(rng, QUESTION_ROOTS)}/{pick(rng, SOURCES)}_{num}.{ext}", num


def code_path(rng: np.random.Generator, real_path: str, num: str) -> str:
    """What the code assigns to image_path: the question's path, or (often) a stale or invented one."""
    if rng.random() < 0.55:
        return real_path
    return pick(rng, STALE_PATHS).format(id=num.lstrip("0") or "0")


def output_name(rng: np.random.Generator, num: str, op: str, ext: str) -> str:
    form = int(rng.integers(0, 4))
    if form == 0:
        return f"{num.lstrip('0') or '0'}_{hex_id(rng)}.{ext}"
    if form == 1:
        return f"{op}_{hex_id(rng)}.{ext}"
    if form == 2:
        uid = f"{hex_id(rng, 8)}-{hex_id(rng, 4)}-4{hex_id(rng, 3)}-a{hex_id(rng, 3)}-{hex_id(rng, 12)}"
        return f"{uid}.{ext}"
    return f"processed_{num}_{op}_{hex_id(rng, 6)}.{ext}"


def options_block(rng: np.random.Generator, answer: str, distractors: list[str]) -> tuple[str, str]:
    """(the 'Options:' lines, the correct letter) with the answer at a random position."""
    choices = list(dict.fromkeys([answer] + [d for d in distractors if d != answer]))[:4]
    order = rng.permutation(len(choices))
    choices = [choices[i] for i in order]
    letters = "ABCD"
    lines = ["Options:"] + [f"{letters[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines), letters[choices.index(answer)]


def image_question(rng: np.random.Generator, body: str, path: str, width: int, height: int) -> str:
    prefix, suffix = pick(rng, DECORATIONS)
    quote = '"' if rng.random() < 0.7 else ""
    lines = [
        "<image>",
        body,
        f"{prefix}User Image Path{suffix} {quote}{path}{quote}",
        f"{prefix}User Image Size{suffix} {quote}{width}x{height}{quote}",
        "",
        FORMAT_FOOTER,
    ]
    return "\n".join(lines)


def text_question(body: str) -> str:
    return f"{body}\n\n{FORMAT_FOOTER}"


def code_round(code: str, output: str) -> str:
    return f"<code>\n```python\n{code}\n```\n</code>\n<sandbox_output>{output}</sandbox_output>\n"


def response(parts: list[str], answer: str) -> str:
    return "<think>" + "".join(parts).rstrip("\n") + "</think>\n<answer>" + answer + "</answer>"


def answer_text(rng: np.random.Generator, value: str, letter: str | None) -> str:
    if letter is None:
        return pick(rng, (value, f"**{value}**"))
    return pick(rng, (f"**{letter}. {value}**", f"{letter}. {value}", letter, f"**{letter}**"))


WHERE = {
    "sign": "the {colour} sign",
    "rotated": "the tilted {colour} label",
    "faint": "the faint grey label",
    "table": "the small price list",
}
INTROS = {
    "zoom": (
        "The text on {where} is too small to read at this resolution. I will crop the region around it "
        "and enlarge it.\n",
        "To read {where} I should zoom into that region of the image.\n",
        "{where_cap} is tiny, located around ({cx}, {cy}). Cropping and upscaling it will make the "
        "characters legible.\n",
    ),
    "rotate": (
        "{where_cap} is rotated, so the characters are hard to read. I will crop it and rotate it upright.\n",
        "The text on {where} is turned by about {angle} degrees. Let me crop that area and straighten it.\n",
    ),
    "enhance": (
        "{where_cap} has very low contrast against its background. I will crop it and enhance the contrast.\n",
        "The characters on {where} barely differ from the background; increasing the contrast of that region "
        "should reveal them.\n",
    ),
}
OBSERVE = (
    "Upon examining the processed image, {where} reads {value}.",
    "The processed image clearly shows {value} on {where}.",
    "Now the text is legible: it says {value}.",
)
CONFIRM = (" This matches option {letter}.", " So the answer is option {letter}.", "")


def intro(rng: np.random.Generator, mode: str, target, where: str) -> str:
    x1, y1, x2, y2 = target.box
    text = pick(rng, INTROS[mode])
    return text.format(
        where=where, where_cap=where[0].upper() + where[1:], cx=(x1 + x2) // 2, cy=(y1 + y2) // 2,
        angle=abs(target.angle),
    )


def observe(rng: np.random.Generator, where: str, value: str, letter: str | None) -> str:
    text = pick(rng, OBSERVE).format(where=where, value=value)
    if letter:
        text += pick(rng, CONFIRM).format(letter=letter)
    return text
