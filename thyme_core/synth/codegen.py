"""Python code the way Thyme writes it: open the image, crop a literal box, transform, save, print the path.

Three code styles share one description of the work (`ImageJob`): PIL (Image, ImageEnhance, ImageOps,
ImageFilter), cv2, and numpy arrays saved through PIL. The job's steps are applied in order to the
cropped region; each style has its own idiom per step, so the data shows the variety the real model
writes. Crop boxes are literal numbers that a sandbox clamping them against the input image leaves
unchanged (`clamp_box`); a box on an earlier, larger output that it would change goes through a name the
sandbox does not clamp, as the released model's data had to. Variable names and file-name patterns vary; everything comes from the
caller's seeded Generator, so the code text is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thyme_core.thyme_format import OUTPUT_DIR, clamp_box

STYLES = ("pil", "cv2", "np")
# Steps each style knows. "rotate" carries the angle (degrees counter-clockwise) that undoes the scene's turn.
STEPS = {
    "pil": ("zoom", "rotate", "contrast", "brightness", "autocontrast", "sharpen", "threshold"),
    "cv2": ("zoom", "rotate", "contrast", "clahe", "equalize", "sharpen", "threshold"),
    "np": ("zoom", "rotate", "contrast", "stretch", "threshold"),
}


@dataclass(frozen=True)
class ImageJob:
    """What one image code block does."""

    style: str
    steps: tuple[tuple[str, float], ...]  # (step name, parameter)
    out_name: str  # file name under OUTPUT_DIR
    box: tuple[int, int, int, int] | None = None  # crop box, None to keep the whole input
    path_literal: str = ""  # the literal assigned to image_path (or, with from_output, the earlier output)
    from_output: bool = False  # True: open an earlier output by its OUTPUT_DIR path
    reuse_var: str = ""  # non-empty: the image is already in this variable (from an earlier block)
    # Size of the sample's input image. Thyme's sandbox clamps literal boxes against it even when the code
    # crops an earlier output; a box that clamping would change is written through a name it leaves alone.
    clamp_size: tuple[int, int] | None = None

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, not {self.style!r}")
        unknown = [name for name, _ in self.steps if name not in STEPS[self.style]]
        if unknown:
            raise ValueError(f"{self.style} style has no step(s) {unknown}")


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(0, len(options)))]


def image_code(job: ImageJob, rng: np.random.Generator) -> str:
    """Code text for the job in its style."""
    emit = {"pil": _pil, "cv2": _cv2, "np": _np}[job.style]
    lines = emit(job, rng)
    return "\n".join(lines)


def loaded_var(style: str) -> str:
    """The variable holding the opened input image after a block of this style (for reuse by the next)."""
    return {"pil": "img", "cv2": "image", "np": "arr"}[style]


def _output_lines(job: ImageJob, rng: np.random.Generator, var_name: str) -> list[str]:
    form = int(rng.integers(0, 3))
    if form == 0:
        return [f'{var_name} = os.path.join("{OUTPUT_DIR}/", "{job.out_name}")']
    if form == 1:
        return [
            f'output_dir = "{OUTPUT_DIR}"',
            "os.makedirs(output_dir, exist_ok=True)",
            f'{var_name} = os.path.join(output_dir, "{job.out_name}")',
        ]
    return [f'{var_name} = "{OUTPUT_DIR}/{job.out_name}"']


def literal_box_is_stable(job: ImageJob) -> bool:
    """True when a sandbox that clamps literal boxes against the input image leaves job.box as it is."""
    return job.clamp_size is None or clamp_box(job.box, *job.clamp_size) == tuple(job.box)


def _box_lines(job: ImageJob, rng: np.random.Generator, names=("x1", "y1", "x2", "y2")) -> list[str]:
    x1, y1, x2, y2 = job.box
    if not literal_box_is_stable(job):
        return [f"region = ({x1}, {y1}, {x2}, {y2})", f"{', '.join(names)} = region"]
    if rng.random() < 0.5:
        return [f"{', '.join(names)} = {x1}, {y1}, {x2}, {y2}"]
    a, b, c, d = names
    return [f"{a}, {b} = {x1}, {y1}", f"{c}, {d} = {x2}, {y2}"]


# --- PIL -------------------------------------------------------------------------------------------


def _pil(job: ImageJob, rng: np.random.Generator) -> list[str]:
    lines = ["from PIL import Image, ImageEnhance, ImageOps, ImageFilter", "import os", ""]
    if job.reuse_var:
        src = job.reuse_var
    elif job.from_output:
        lines += [f'previous_path = "{job.path_literal}"', "img = Image.open(previous_path)"]
        src = "img"
    else:
        convert = pick(rng, ("", '.convert("RGB")'))
        lines += [f'image_path = "{job.path_literal}"', f"img = Image.open(image_path){convert}"]
        src = "img"
    cur = src
    if job.box is not None:
        if rng.random() < 0.5 and literal_box_is_stable(job):
            lines += [f"box = {tuple(job.box)}", f"cropped = {src}.crop(box)"]
        else:
            lines += _box_lines(job, rng, ("left", "top", "right", "bottom"))
            lines.append(f"cropped = {src}.crop((left, top, right, bottom))")
        cur = "cropped"
    for name, value in job.steps:
        step_lines, cur = _pil_step(name, value, cur, rng)
        lines += step_lines
    out = pick(rng, ("output_path", "processed_path", "save_path"))
    lines += _output_lines(job, rng, out)
    quality = pick(rng, ("", ", quality=95")) if job.out_name.endswith(".jpg") else ""
    lines += [f"{cur}.save({out}{quality})", f"print({out})"]
    return lines


def _pil_step(name: str, value: float, cur: str, rng) -> tuple[list[str], str]:
    if name == "zoom":
        f = int(value)
        resample = pick(rng, ("Image.LANCZOS", "Image.BICUBIC", "Image.Resampling.LANCZOS"))
        return [f"zoomed = {cur}.resize(({cur}.width * {f}, {cur}.height * {f}), {resample})"], "zoomed"
    if name == "rotate":
        a = int(value)
        turn = {90: "ROTATE_90", -90: "ROTATE_270", 180: "ROTATE_180", -180: "ROTATE_180"}
        if a in turn and rng.random() < 0.5:
            return [f"rotated = {cur}.transpose(Image.Transpose.{turn[a]})"], "rotated"
        return [f'rotated = {cur}.rotate({a}, expand=True, fillcolor="white")'], "rotated"
    if name == "contrast":
        return [f"enhanced = ImageEnhance.Contrast({cur}).enhance({value})"], "enhanced"
    if name == "brightness":
        return [f"brightened = ImageEnhance.Brightness({cur}).enhance({value})"], "brightened"
    if name == "autocontrast":
        return [f"enhanced = ImageOps.autocontrast({cur}, cutoff={int(value)})"], "enhanced"
    if name == "sharpen":
        return [f"sharpened = {cur}.filter(ImageFilter.SHARPEN)"], "sharpened"
    if name == "threshold":
        t = int(value)
        return [
            f"gray = ImageOps.grayscale({cur})",
            f"binary = gray.point(lambda p: 255 if p > {t} else 0)",
        ], "binary"
    raise ValueError(f"pil style has no step {name!r}")


# --- cv2 -------------------------------------------------------------------------------------------


def _cv2(job: ImageJob, rng: np.random.Generator) -> list[str]:
    lines = ["import cv2", "import numpy as np", "import os"]
    if rng.random() < 0.4:
        lines.append("from uuid import uuid4")
    lines.append("")
    if job.reuse_var:
        src = job.reuse_var
    elif job.from_output:
        lines += [f'previous_path = "{job.path_literal}"', "image = cv2.imread(previous_path)"]
        src = "image"
    else:
        lines += [f'image_path = "{job.path_literal}"', "image = cv2.imread(image_path)"]
        src = "image"
    cur, gray = src, False
    if job.box is not None:
        lines += _box_lines(job, rng)
        lines.append(f"cropped_image = {src}[y1:y2, x1:x2]")
        cur = "cropped_image"
    for name, value in job.steps:
        step_lines, cur, gray = _cv2_step(name, value, cur, gray, rng)
        lines += step_lines
    out = pick(rng, ("processed_path", "output_path", "save_path"))
    lines += _output_lines(job, rng, out)
    lines += [f"cv2.imwrite({out}, {cur})", f"print({out})"]
    return lines


def _cv2_gray(cur: str, gray: bool) -> tuple[list[str], str]:
    if gray:
        return [], cur
    return [f"gray = cv2.cvtColor({cur}, cv2.COLOR_BGR2GRAY)"], "gray"


def _cv2_step(name: str, value: float, cur: str, gray: bool, rng) -> tuple[list[str], str, bool]:
    if name == "zoom":
        interp = pick(rng, ("cv2.INTER_CUBIC", "cv2.INTER_LINEAR", "cv2.INTER_LANCZOS4"))
        f = int(value)
        line = f"resized_image = cv2.resize({cur}, None, fx={f}, fy={f}, interpolation={interp})"
        return [line], "resized_image", gray
    if name == "rotate":
        return _cv2_rotate(int(value), cur), "rotated", gray
    if name == "contrast":
        beta = int(-(value - 1) * 100)
        return [f"enhanced = cv2.convertScaleAbs({cur}, alpha={value}, beta={beta})"], "enhanced", gray
    if name == "sharpen":
        return [
            "kernel = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32)",
            f"sharpened = cv2.filter2D({cur}, -1, kernel)",
        ], "sharpened", gray
    pre, g = _cv2_gray(cur, gray)
    if name == "clahe":
        return pre + [
            f"clahe = cv2.createCLAHE(clipLimit={value}, tileGridSize=(8, 8))",
            f"enhanced = clahe.apply({g})",
        ], "enhanced", True
    if name == "equalize":
        return pre + [f"enhanced = cv2.equalizeHist({g})"], "enhanced", True
    if name == "threshold":
        return pre + [
            f"_, binary = cv2.threshold({g}, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)"
        ], "binary", True
    raise ValueError(f"cv2 style has no step {name!r}")


def _cv2_rotate(a: int, cur: str) -> list[str]:
    flags = {90: "cv2.ROTATE_90_COUNTERCLOCKWISE", -90: "cv2.ROTATE_90_CLOCKWISE", 180: "cv2.ROTATE_180"}
    if a in flags:
        return [f"rotated = cv2.rotate({cur}, {flags[a]})"]
    return [
        f"(h, w) = {cur}.shape[:2]",
        "center = (w / 2, h / 2)",
        f"M = cv2.getRotationMatrix2D(center, {a}, 1.0)",
        "cos, sin = abs(M[0, 0]), abs(M[0, 1])",
        "new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)",
        "M[0, 2] += new_w / 2 - center[0]",
        "M[1, 2] += new_h / 2 - center[1]",
        f"rotated = cv2.warpAffine({cur}, M, (new_w, new_h), flags=cv2.INTER_CUBIC, "
        "borderValue=(255, 255, 255))",
    ]


# --- numpy -----------------------------------------------------------------------------------------


def _np(job: ImageJob, rng: np.random.Generator) -> list[str]:
    lines = ["import numpy as np", "from PIL import Image", "import os", ""]
    if job.reuse_var:
        src = job.reuse_var
    elif job.from_output:
        lines += [f'previous_path = "{job.path_literal}"', "arr = np.array(Image.open(previous_path))"]
        src = "arr"
    else:
        lines += [f'image_path = "{job.path_literal}"', 'arr = np.array(Image.open(image_path).convert("RGB"))']
        src = "arr"
    cur = src
    if job.box is not None:
        lines += _box_lines(job, rng)
        lines.append(f"region = {src}[y1:y2, x1:x2]")
        cur = "region"
    for name, value in job.steps:
        step_lines, cur = _np_step(name, value, cur)
        lines += step_lines
    out = pick(rng, ("output_path", "processed_path"))
    lines += _output_lines(job, rng, out)
    lines += [f"Image.fromarray({cur}).save({out})", f"print({out})"]
    return lines


def _np_step(name: str, value: float, cur: str) -> tuple[list[str], str]:
    if name == "zoom":
        f = int(value)
        return [f"zoomed = np.repeat(np.repeat({cur}, {f}, axis=0), {f}, axis=1)"], "zoomed"
    if name == "rotate":
        k = {90: -1, -90: 1, 180: 2}.get(int(value))
        if k is not None:
            return [f"rotated = np.ascontiguousarray(np.rot90({cur}, k={k}))"], "rotated"
        return [
            f"rotated = np.array(Image.fromarray({cur}).rotate({int(value)}, expand=True, "
            "fillcolor=(255, 255, 255)))"
        ], "rotated"
    if name == "contrast":
        return [
            f"mean = {cur}.mean()",
            f"enhanced = np.clip(({cur}.astype(np.float32) - mean) * {value} + mean, 0, 255).astype(np.uint8)",
        ], "enhanced"
    if name == "stretch":
        return [
            f"lo, hi = np.percentile({cur}, ({int(value)}, {100 - int(value)}))",
            f"stretched = np.clip(({cur}.astype(np.float32) - lo) * 255.0 / max(hi - lo, 1.0), 0, 255)",
            "stretched = stretched.astype(np.uint8)",
        ], "stretched"
    if name == "threshold":
        return [
            f"gray = {cur}.mean(axis=2) if {cur}.ndim == 3 else {cur}",
            f"binary = np.where(gray > {int(value)}, 255, 0).astype(np.uint8)",
        ], "binary"
    raise ValueError(f"np style has no step {name!r}")
