"""Thyme's text conventions, in one place: the response markup, the sandbox paths and the crop-box rule.

A response looks like
    <think> ... <code>```python ...```</code> <sandbox_output>IMAGE or TEXT</sandbox_output> ... </think>
    <answer>...</answer>
Model code refers to its input as `image_path = "..."` (often a stale path that must be rebound), saves
outputs under /mnt/data/temp_processed_images/ and prints the saved path; computation code prints a value.
Everything that parses or produces this markup (data preparation, the sandbox, the agent loop, rewards)
uses these helpers, so the conventions cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Where the released model saves processed images; the sandbox maps it onto the session's output folder.
OUTPUT_DIR = "/mnt/data/temp_processed_images"

# Stop strings of the released model's inference loop.
STOP_STRINGS = ("</code>", "</answer>")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Qwen2.5-VL cannot take images with a side under 28 px or an aspect ratio over 200.
MIN_IMAGE_SIDE = 28
MAX_ASPECT_RATIO = 200

# Crop boxes narrower than this are widened (the released model's outputs were produced so).
MIN_CROP_SIDE = 64

CODE_BLOCK_RE = re.compile(r"<code>(?P<body>.*?)</code>", re.S)
SANDBOX_OUTPUT_RE = re.compile(r"<sandbox_output>(?P<body>.*?)</sandbox_output>", re.S)
ANSWER_RE = re.compile(r"<answer>(?P<body>.*?)</answer>", re.S)
_FENCE_RE = re.compile(r"^\s*```[ \t]*(?:python3?|py)?[ \t]*\n?(?P<code>.*?)\n?[ \t]*```\s*$", re.S | re.I)
# The image placeholder some data uses in place of a printed path; in a question, where the image goes.
IMAGE_PLACEHOLDER = "<image>"

# The output-format footer of Thyme's SFT questions and of its evaluation prompt (agent/prompt.user_turn).
FORMAT_FOOTER = (
    "### **Output Format (strict adherence required):**\n\n"
    "<think>Your detailed reasoning process, including any code, should go here.</think>\n"
    "<answer>Your final answer to the user's question goes here.</answer>"
)


def strip_fences(code: str) -> str:
    """The code inside <code>, with or without ```python fences.

    >>> strip_fences("\\n```python\\nprint(1)\\n```\\n")
    'print(1)'
    >>> strip_fences("print(2)")
    'print(2)'
    """
    m = _FENCE_RE.match(code)
    return (m.group("code") if m else code).strip("\n")


@dataclass(frozen=True)
class CodeBlock:
    """One <code> block of a response; `span` covers the whole tag, `code_span` the code text itself."""

    index: int
    code: str
    span: tuple[int, int]
    code_span: tuple[int, int]


@dataclass(frozen=True)
class SandboxOutput:
    index: int
    body: str
    span: tuple[int, int]
    body_span: tuple[int, int]

    @property
    def shows_image(self) -> bool:
        """True when the block stands for an image: the placeholder or a printed image path."""
        text = self.body.strip()
        if IMAGE_PLACEHOLDER in text:
            return True
        return any(line.strip().strip("'\"").lower().endswith(IMAGE_EXTENSIONS) for line in text.splitlines())


def code_blocks(response: str) -> list[CodeBlock]:
    blocks = []
    for i, m in enumerate(CODE_BLOCK_RE.finditer(response)):
        body = m.group("body")
        code = strip_fences(body)
        offset = body.find(code) if code else 0
        start = m.start("body") + max(offset, 0)
        blocks.append(CodeBlock(i, code, m.span(), (start, start + len(code))))
    return blocks


def sandbox_outputs(response: str) -> list[SandboxOutput]:
    return [
        SandboxOutput(i, m.group("body"), m.span(), m.span("body"))
        for i, m in enumerate(SANDBOX_OUTPUT_RE.finditer(response))
    ]


def clamp_box(box, width: int, height: int, min_side: int = MIN_CROP_SIDE) -> tuple[int, int, int, int]:
    """Clamp an (x1, y1, x2, y2) crop box to a width x height image, Thyme's way.

    Coordinates are rounded and clamped into the image; a side shorter than `min_side` is extended from its
    first coordinate (x2 = x1 + min_side) and shifted back inside if that overflows. An image smaller than
    `min_side` on an axis yields the whole axis.

    >>> clamp_box((10, 10, 20, 200), 1000, 800)
    (10, 10, 74, 200)
    >>> clamp_box((980, -5, 990, 100), 1000, 800)
    (936, 0, 1000, 100)
    """
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, x2 = _clamp_axis(min(x1, x2), max(x1, x2), width, min_side)
    y1, y2 = _clamp_axis(min(y1, y2), max(y1, y2), height, min_side)
    return x1, y1, x2, y2


def _clamp_axis(lo: int, hi: int, size: int, min_side: int) -> tuple[int, int]:
    lo = min(max(lo, 0), size)
    hi = min(max(hi, 0), size)
    if hi - lo < min_side:
        hi = lo + min_side
        if hi > size:
            hi = size
            lo = max(0, size - min_side)
    return lo, hi


def output_size_problem(width: int, height: int) -> str | None:
    """Why Qwen2.5-VL cannot take an image of this size, or None when it can."""
    if min(width, height) < MIN_IMAGE_SIDE:
        return f"side under {MIN_IMAGE_SIDE} px ({width}x{height})"
    if max(width, height) / max(min(width, height), 1) > MAX_ASPECT_RATIO:
        return f"aspect ratio over {MAX_ASPECT_RATIO} ({width}x{height})"
    return None
