"""What a run left behind: new images in the session's output folder, and the result's final status.

An image is reported when it was created or changed by this run (mtime or size differ from the snapshot
taken just before); its size is read from the header only. Symbolic links and unreadable files are flagged,
never followed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from thyme_core.sandbox.types import ExecResult, Limits, OutputImage, Status
from thyme_core.thyme_format import IMAGE_EXTENSIONS, output_size_problem


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            out[path] = (st.st_mtime_ns, st.st_size)
    return out


def new_images(folder: Path, before: dict) -> tuple[list[OutputImage], str]:
    """Image files created or changed by this run, oldest first, and the first size problem among them."""
    found, problem = [], ""
    after = snapshot(folder)
    changed = [p for p, sig in after.items() if before.get(p) != sig and p.lower().endswith(IMAGE_EXTENSIONS)]
    for path in sorted(changed, key=lambda p: (after[p][0], p)):
        if os.path.islink(path):
            problem = problem or f"{path} is a symbolic link"
            continue
        try:
            with Image.open(path) as im:
                width, height = im.size
        except Exception as exc:  # PIL raises many types for a file that is not a readable image
            problem = problem or f"{os.path.basename(path)} is not a readable image ({type(exc).__name__})"
            continue
        found.append(OutputImage(path, width, height))
        size_problem = output_size_problem(width, height)
        if size_problem and not problem:
            problem = f"{os.path.basename(path)}: {size_problem}"
    return found, problem


def classify(reply: dict, images: list[OutputImage], problem: str) -> ExecResult:
    status, error = Status(reply["status"]), str(reply.get("error", ""))
    if status == Status.OK and problem:
        status, error = Status.BAD_OUTPUT, f"bad output image: {problem}"
    elif status == Status.OK and not images and not str(reply.get("stdout", "")).strip():
        status = Status.NO_OUTPUT
    return ExecResult(status, str(reply.get("stdout", "")), str(reply.get("stderr", "")), tuple(images), error,
                      truncated=bool(reply.get("truncated")))


def failure_message(status: Status, limits: Limits) -> str:
    if status == Status.TIMEOUT:
        return f"TimeoutError: execution exceeded the limit ({limits.timeout_s:g} s wall clock / {limits.cpu_s} s CPU)"
    return "RuntimeError: the sandbox interpreter died (crash, signal or resource limit)"
