"""Thyme-compatibility rewrites applied to model code before it runs (pure functions, host side).

The released model writes `image_path = "<some stale path>"` and literal crop boxes that may fall outside the
image; the outputs it was trained on were produced by a sandbox that rebound the path and clamped the boxes.
These edits reproduce that, on the syntax tree, splicing only the edited literals back into the original text
(comments, layout and line numbers stay as the model wrote them, so tracebacks point at the model's lines).

Covered: `image_path = <string literal>` anywhere (also inside functions and branches); literal 4-tuples
assigned to box / bbox / crop_box / coords, and `x1, y1, x2, y2 = <4 literals>` / `left, top, right, bottom =
<4 literals>`, negative literals included. Not covered: boxes computed at run time, or passed inline to
`.crop(...)`: those run as written (PIL pads, numpy slicing clips).
"""

from __future__ import annotations

import ast
import json
import textwrap

from thyme_core.thyme_format import OUTPUT_DIR, clamp_box, strip_fences

BOX_NAMES = frozenset({"box", "bbox", "crop_box", "coords"})
BOX_UNPACK_NAMES = (("x1", "y1", "x2", "y2"), ("left", "top", "right", "bottom"))


def prepare_code(
    code: str,
    image_path: str | None,
    image_size: tuple[int, int] | None,
    output_dir: str | None = None,
) -> str:
    """The code to run: fences stripped, dedented, image_path rebound, literal crop boxes clamped.

    `output_dir`, when given, replaces Thyme's /mnt/data/temp_processed_images in the text (only for the
    weaker no-isolation mode; the isolated sandbox mounts the session folder at that path instead).

    >>> prepare_code('image_path = "/old/x.jpg"\\nbox = (-5, 10, 20, 900)', "/in/a.jpg", (1000, 800))
    'image_path = "/in/a.jpg"\\nbox = (0, 10, 64, 800)'
    """
    text = textwrap.dedent(strip_fences(code))
    if output_dir is not None:
        text = map_output_dir(text, output_dir)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text  # runs as written, so the model sees the SyntaxError it caused
    edits: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            edits.extend(_edits_for(node, image_path, image_size))
    return _splice(text, edits)


def map_output_dir(text: str, output_dir: str) -> str:
    """Point Thyme's output folder (with or without the trailing slash) at `output_dir`."""
    return text.replace(OUTPUT_DIR, output_dir.rstrip("/"))


def _edits_for(node, image_path, image_size) -> list[tuple[ast.AST, str]]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    value = node.value
    if value is None:
        return []
    if image_path is not None and _is_str(value) and any(_is_name(t, "image_path") for t in targets):
        return [(value, json.dumps(image_path))]  # a JSON string is a valid Python string literal
    if image_size is None:
        return []
    numbers = _literal_numbers(value)
    if numbers is None or len(numbers) != 4 or not any(_is_box_target(t) for t in targets):
        return []
    clamped = clamp_box(numbers, *image_size)
    inner = ", ".join(str(v) for v in clamped)
    text = f"[{inner}]" if isinstance(value, ast.List) else f"({inner})"
    return [(value, text)]


def _is_name(node, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _is_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_box_target(target) -> bool:
    if isinstance(target, ast.Name):
        return target.id in BOX_NAMES
    if isinstance(target, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Name) for e in target.elts):
        return tuple(e.id for e in target.elts) in BOX_UNPACK_NAMES
    return False


def _literal_numbers(node) -> list[float] | None:
    if not isinstance(node, (ast.Tuple, ast.List)):
        return None
    out = []
    for elt in node.elts:
        sign = 1
        if isinstance(elt, ast.UnaryOp) and isinstance(elt.op, (ast.USub, ast.UAdd)):
            sign = -1 if isinstance(elt.op, ast.USub) else 1
            elt = elt.operand
        if not (isinstance(elt, ast.Constant) and type(elt.value) in (int, float)):
            return None
        out.append(sign * elt.value)
    return out


def _splice(text: str, edits: list[tuple[ast.AST, str]]) -> str:
    """Replace each node's source span with its new text (ast offsets are UTF-8 byte columns)."""
    if not edits:
        return text
    lines = text.encode().splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    data = text.encode()
    spans = sorted(
        ((starts[n.lineno - 1] + n.col_offset, starts[n.end_lineno - 1] + n.end_col_offset, new) for n, new in edits),
        reverse=True,
    )
    for start, end, new in spans:
        data = data[:start] + new.encode() + data[end:]
    return data.decode()
