"""Path rewriting: every path a Thyme sample mentions, mapped to the stored image it means.

A sample's images are `image[0]` (the original) then `image[k]`, the k-th processed image in the order the
response shows them. `rewrite_paths(question, response, stored)` takes `stored[k]`, the path where image[k]
was stored, relative to the data home, and returns the text with those paths in place: **paths in the
rewritten text are relative to the data home** (e.g. `images/ab/ab12...ef.jpg`).

What is mapped and rewritten
- The question's `User Image Path:` line, in any decoration (`**User Image Path:**`, `### User Image Path:**`,
  plain), quoted ("", '', ``) or not -> stored[0]. Only the path changes: decoration and quoting style stay
  as they were (an unquoted path stays unquoted; stored paths hold no spaces, so none is needed).
- In each <code> block, string literals that look like image paths (no whitespace, an image extension, a
  non-empty file name), resolved in this order:
  1. a stored path of this sample -> that image (so rewriting twice changes nothing);
  2. a path under OUTPUT_DIR that this block's own <sandbox_output> prints -> written here (step 4), even
     when an earlier block wrote the same name;
  3. a path an earlier <sandbox_output> printed (or, where that output was `<image>`, an earlier block
     wrote) -> that processed image: an earlier output opened again;
  4. any other path under OUTPUT_DIR -> the image this block writes (the one its own output shows):
     mapped, but NOT rewritten: that folder is the sandbox's contract and the model must keep learning it.
     If the block's output shows no image, it is left alone and not mapped;
  5. the question's path, a path with the same file name, or the literal of `image_path = "..."` (stale or
     invented: it means the input) -> image[0];
  6. a path outside OUTPUT_DIR that this block's own output prints (`/tmp/crop.jpg`) -> that output,
     rewritten: only OUTPUT_DIR is the sandbox's contract, and a stray folder name would make the
     rewritten sample unmappable the second time round;
  7. a bare file name (no folder) is left alone and not mapped: it is a piece of
     `os.path.join(output_dir, "crop.jpg")`, and rewriting a piece would break the join;
  8. anything else means no image of the sample: Reject.UNMAPPED_PATH, naming the path and block.
- Each <sandbox_output> that shows an image: the printed path -> stored path of the next processed image;
  the `<image>` placeholder stays as is and is recorded. One output is one image.

What is left as is, and why
- Comments in code (they never run); f-strings with replacement fields (dynamic names cannot be resolved
  statically; under OUTPUT_DIR they are the sandbox's business); the directory literal OUTPUT_DIR itself
  (no file name); text outputs (computation results) and the rest of the prose.

Decisions where the data is ambiguous
- Every `User Image Path:` line means image[0] (a sample has one input image); a sample with images and no
  such line is fine; such a line in a sample without images is Reject.UNMAPPED_PATH.
- The same content stored twice (a processed image identical to the original) has one stored path; a literal
  equal to it maps to the first index holding it.

On any problem nothing is rewritten: the result carries the original text, no mappings, and the problem
(the sample is rejected, not half-repaired). Pure and regex-only: roughly 0.1 ms for a 3 KB response.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from thyme_core.base.reasons import Reject
from thyme_core.thyme_format import IMAGE_EXTENSIONS, IMAGE_PLACEHOLDER, OUTPUT_DIR, code_blocks, sandbox_outputs

Where = Literal["question", "code", "sandbox_output"]

_OUTPUT_PREFIX = OUTPUT_DIR.rstrip("/") + "/"

# `User Image Path:` with its decorations (`**`, `###`, `:**`, a line break before the value); only the
# value group (quoted: dq / sq / bq, or bare, less trailing punctuation) is replaced.
_QUESTION_PATH_RE = re.compile(
    r"User[ \t]+Image[ \t]+Path[ \t]*(?:\*\*)?[ \t]*:[ \t]*(?:\*\*)?[ \t]*\n?[ \t]*"
    r"""(?:"(?P<dq>[^"\n]*)"|'(?P<sq>[^'\n]*)'|`(?P<bq>[^`\n]*)`|(?P<bare>[^\s"'`*]*[^\s"'`*.,;:)]))""",
    re.I,
)
# One pass over code: comments are matched (to be skipped) so quotes inside them are not taken as strings,
# and strings are matched whole so a '#' inside one is not a comment.
_CODE_TOKEN_RE = re.compile(
    r"""(?P<comment>\#[^\n]*)"""
    r"""|(?P<assign>\bimage_path[ \t]*=[ \t]*)?(?:(?<![\w])(?P<prefix>[rRbBuUfF]{1,2}))?"""
    r'''(?:"""(?P<t2>.*?)"""|\'\'\'(?P<t1>.*?)\'\'\''''
    r"""|"(?P<d>(?:\\.|[^"\\\n])*)"|'(?P<s>(?:\\.|[^'\\\n])*)')""",
    re.S,
)
_LINE_RE = re.compile(r"[^\n]+")
# A literal that is the first argument of a read call names an existing file, never a new output.
_READ_CALL_RE = re.compile(r"(?:imread|Image\.open|\bopen)\s*\(\s*$")
_UNSAFE_STORED = re.compile(r"""[\s"'`\\{}]""")


@dataclass(frozen=True)
class PathMapping:
    """One path in the text and the image it means."""

    where: Where
    block: int  # index of the code block / sandbox output; for the question, of the path line
    original: str  # the path text as it stood in the input (or `<image>`)
    image_index: int  # index into the sample's image list
    stored: str  # stored[image_index], relative to the data home
    rewritten: bool  # the text now carries `stored`; False where it keeps its own (OUTPUT_DIR, `<image>`)


@dataclass(frozen=True)
class PathProblem:
    reason: Reject
    detail: str


@dataclass(frozen=True)
class PathRewrite:
    question: str
    response: str
    mappings: tuple[PathMapping, ...]
    problem: PathProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Problem(Exception):
    def __init__(self, reason: Reject, detail: str):
        super().__init__(detail)
        self.problem = PathProblem(reason, detail)


def rewrite_paths(question: str, response: str, stored: Sequence[str]) -> PathRewrite:
    """Map every path in a sample to the stored image it means; see the module docstring for the rules.

    >>> r = rewrite_paths('User Image Path: "/eval/1.jpg"', "<answer>A</answer>", ["images/ab/ab.jpg"])
    >>> r.question, r.problem
    ('User Image Path: "images/ab/ab.jpg"', None)
    """
    for path in stored:
        if not path or _UNSAFE_STORED.search(path):
            raise ValueError(f"stored path {path!r} must be non-empty, without quotes, spaces or braces")
    try:
        q_text, q_maps, q_paths = _rewrite_question(question, stored)
        r_text, r_maps = _rewrite_response(response, stored, q_paths)
    except _Problem as e:
        return PathRewrite(question, response, (), e.problem)
    return PathRewrite(q_text, r_text, tuple(q_maps + r_maps), None)


def rewrite_question_paths(text: str, stored: Sequence[str]) -> PathRewrite:
    """Only the `User Image Path:` lines of a prompt text (RL prompts have no response to check against).

    >>> rewrite_question_paths('User Image Path: "/x/1.jpg"', ["images/ab/ab.jpg"]).question
    'User Image Path: "images/ab/ab.jpg"'
    """
    try:
        q_text, q_maps, _ = _rewrite_question(text, stored)
    except _Problem as e:
        return PathRewrite(text, "", (), e.problem)
    return PathRewrite(q_text, "", tuple(q_maps), None)


def _rewrite_question(question: str, stored: Sequence[str]) -> tuple[str, list[PathMapping], list[str]]:
    edits, maps, paths = [], [], []
    for i, m in enumerate(_QUESTION_PATH_RE.finditer(question)):
        group = m.lastgroup
        original = m.group(group)
        if not stored:
            detail = f"question path line {i} names {original!r} but the sample has no image"
            raise _Problem(Reject.UNMAPPED_PATH, detail)
        edits.append((m.start(group), m.end(group), stored[0]))
        maps.append(PathMapping("question", i, original, 0, stored[0], True))
        paths.append(original)
    return _apply(question, edits), maps, paths


def _rewrite_response(response: str, stored: Sequence[str], q_paths: list[str]) -> tuple[str, list[PathMapping]]:
    blocks = code_blocks(response)
    outputs = sandbox_outputs(response)
    # Image index of each sandbox output (None for text outputs), in order of appearance.
    out_image: list[int | None] = []
    k = 0
    for out in outputs:
        if out.shows_image:
            k += 1
            out_image.append(k)
        else:
            out_image.append(None)
    expected = max(len(stored) - 1, 0)
    if k != expected:
        raise _Problem(
            Reject.IMAGE_COUNT_MISMATCH,
            f"{k} sandbox output(s) show an image but the sample has {expected} processed image(s) "
            f"({len(stored)} image(s) in all)"
        )

    ctx = _Context(stored, q_paths)
    edits: list[tuple[int, int, str]] = []
    maps: list[PathMapping] = []
    oi = 0
    for bi, block in enumerate(blocks):
        # Outputs before this block are earlier outputs; the first one after it is its own.
        while oi < len(outputs) and outputs[oi].span[0] < block.span[0]:
            _take_output(outputs[oi], out_image[oi], ctx, edits, maps)
            oi += 1
        next_start = blocks[bi + 1].span[0] if bi + 1 < len(blocks) else len(response)
        own = oi if oi < len(outputs) and outputs[oi].span[0] < next_start else None
        own_image = out_image[own] if own is not None else None
        own_shown = _shown_paths(outputs[own]) if own_image is not None else set()
        _rewrite_code(block.index, response, block.code_span, own_image, own_shown, ctx, edits, maps)
    for o in range(oi, len(outputs)):
        _take_output(outputs[o], out_image[o], ctx, edits, maps)
    edits.sort()
    return _apply(response, edits), maps


class _Context:
    """What a literal in the current code block can refer to: grows as blocks and outputs go by.

    Only facts that survive a rewrite feed it (stored paths, paths printed by outputs, paths written by
    blocks whose output is the `<image>` placeholder), so rewriting a rewritten sample maps the same.
    """

    def __init__(self, stored: Sequence[str], q_paths: list[str]):
        self.stored = list(stored)
        self.index_of: dict[str, int] = {}
        for i, path in enumerate(stored):
            self.index_of.setdefault(path, i)  # the same content twice: the first index
        self.q_paths = set(q_paths)
        self.q_names = {_basename(p) for p in q_paths}
        self.earlier: dict[str, int] = {}  # full path shown / written earlier -> image index


def _take_output(out, image, ctx: _Context, edits, maps) -> None:
    if image is None:
        return
    stored = ctx.stored[image]
    base = out.body_span[0]
    for m in _LINE_RE.finditer(out.body):
        line = m.group()
        if IMAGE_PLACEHOLDER in line:
            maps.append(PathMapping("sandbox_output", out.index, IMAGE_PLACEHOLDER, image, stored, False))
            continue
        token = _shown_path(line)
        if token is None:
            continue
        start = base + m.start() + line.rfind(token)
        edits.append((start, start + len(token), stored))
        maps.append(PathMapping("sandbox_output", out.index, token, image, stored, True))
        ctx.earlier.setdefault(token, image)


def _shown_path(line: str) -> str | None:
    """The image path a printed line ends with (the same test as SandboxOutput.shows_image), or None."""
    text = line.strip().strip("'\"")
    if not text.lower().endswith(IMAGE_EXTENSIONS):
        return None
    if text.startswith("/") or not any(c.isspace() for c in text):
        return text  # the whole line is a path (possibly with spaces in it)
    return text.rsplit(None, 1)[-1].strip("'\"")  # "Saved to /mnt/.../x.jpg": the last word


def _shown_paths(out) -> set[str]:
    paths = set()
    for m in _LINE_RE.finditer(out.body):
        token = _shown_path(m.group())
        if token:
            paths.add(token)
    return paths


_REWRITE, _WRITTEN, _LEAVE = "rewrite", "written", "leave"


def _rewrite_code(bi: int, response: str, code_span, own: int | None, own_shown: set[str], ctx: _Context,
                  edits, maps) -> None:
    written = []
    for m in _CODE_TOKEN_RE.finditer(response, *code_span):
        group = m.lastgroup
        if group == "comment":
            continue
        text = m.group(group)
        if "f" in (m.group("prefix") or "").lower() and "{" in text:
            continue  # dynamic: cannot be resolved statically
        if not _looks_like_image_path(text):
            continue
        read = _READ_CALL_RE.search(response, max(code_span[0], m.start() - 48), m.start()) is not None
        image, action = _resolve(text, m.group("assign") is not None, read, own, own_shown, ctx, bi)
        if action == _LEAVE:
            continue
        stored = ctx.stored[image]
        if action == _WRITTEN:
            written.append(text)
        elif text != stored:
            edits.append((m.start(group), m.end(group), stored))
        maps.append(PathMapping("code", bi, text, image, stored, action == _REWRITE))
    if own is not None and not own_shown:  # `<image>`: the written path is the only name it has
        for path in written:
            ctx.earlier.setdefault(path, own)


def _resolve(text: str, assign: bool, read: bool, own: int | None, own_shown: set[str], ctx: _Context, bi: int):
    """(image index, action) for one literal; raises _Problem when it means no image."""
    if text in ctx.index_of:
        return ctx.index_of[text], _REWRITE
    in_output_dir = text.startswith(_OUTPUT_PREFIX)
    if in_output_dir and text in own_shown:
        return own, _WRITTEN  # written here, even if an earlier block used the same name
    if text in ctx.earlier:
        return ctx.earlier[text], _REWRITE
    if in_output_dir and not read:
        return (own, _WRITTEN) if own is not None else (None, _LEAVE)
    if ctx.stored and (assign or text in ctx.q_paths or _basename(text) in ctx.q_names):
        return 0, _REWRITE
    if text in own_shown and "/" in text:
        return own, _REWRITE  # written outside OUTPUT_DIR and printed: that output
    if "/" not in text:
        return None, _LEAVE  # a piece of os.path.join(output_dir, ...), not a path on its own
    raise _Problem(Reject.UNMAPPED_PATH, f"code block {bi}: {text!r} means no image of the sample")


def _looks_like_image_path(text: str) -> bool:
    """No whitespace, an image extension and a non-empty file name ('.jpg' alone is a suffix)."""
    if not text.lower().endswith(IMAGE_EXTENSIONS) or any(c.isspace() for c in text):
        return False
    name = _basename(text)
    return name.rfind(".") > 0


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    if not edits:
        return text
    parts, pos = [], 0
    for start, end, new in edits:
        parts.append(text[pos:start])
        parts.append(new)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
