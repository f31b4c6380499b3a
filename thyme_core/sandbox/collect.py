"""Reading what a run left behind, safely: the output folder through a descriptor, and the reply's fields.

The session is frozen while this runs (pool.py), and still every step assumes the folder is hostile:
- It is walked from a directory descriptor (the sandbox's own tmpfs, sent by the template), never by a host
  path; sub-folders are opened relative to their parent with O_NOFOLLOW, at most MAX_DEPTH deep and
  MAX_ENTRIES entries in all (a folder nested thousands deep is cut there, never recursed into).
- An image is a file created or changed by this run (inode, mtime or size differ from the snapshot taken
  just before). It is opened once, relative to its folder's descriptor, with O_NOFOLLOW | O_NONBLOCK (a
  link fails, a FIFO does not block), `fstat`ed on that same descriptor (regular files only, at most
  Limits.max_file_mb), read once, and only those bytes are checked (header, declared size, PNG CRCs) and
  handed on. Nothing later opens a path inside the session.
- Text fields are cut to their caps, lone surrogates replaced, host folders replaced by neutral names.
Nothing here raises for what the code did: a problem becomes the result's status and reason.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import stat
import warnings

from PIL import Image

from thyme_core.sandbox.types import MAX_ERROR_CHARS, MAX_IMAGES, ExecResult, Limits, OutputImage, Status
from thyme_core.thyme_format import IMAGE_EXTENSIONS, OUTPUT_DIR, output_size_problem

MAX_DEPTH, MAX_ENTRIES = 8, 4096
MAX_PIXELS = 64_000_000  # a declared size past this is refused before any decoding
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
REPLY_STATUSES = frozenset({"ok", "error", "timeout", "memory"})

Snapshot = dict[str, tuple[int, int, int]]  # relative path -> (inode, mtime_ns, size)


def snapshot(dirfd: int) -> Snapshot:
    """Every entry under the folder (bounded), with what tells a changed file from an unchanged one."""
    out: Snapshot = {}
    todo = [("", os.dup(dirfd), 0)]
    while todo:
        rel, fd, depth = todo.pop()
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if len(out) >= MAX_ENTRIES:
                        break
                    path = f"{rel}{entry.name}"
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
                    if stat.S_ISDIR(st.st_mode) and depth + 1 < MAX_DEPTH:
                        try:
                            todo.append((path + "/", os.open(entry.name, _DIR, dir_fd=fd), depth + 1))
                        except OSError:
                            pass
        except OSError:
            pass
        finally:
            os.close(fd)
    return out


def new_images(dirfd: int, before: Snapshot, limits: Limits) -> tuple[list[OutputImage], str]:
    """Image files this run created or changed (oldest first), read once, and the first problem among them."""
    after = snapshot(dirfd)
    changed = [p for p, sig in after.items() if before.get(p) != sig and p.lower().endswith(IMAGE_EXTENSIONS)]
    changed.sort(key=lambda p: (after[p][1], p))
    problem = ""
    if len(changed) > MAX_IMAGES:
        problem, changed = f"more than {MAX_IMAGES} images saved in one run", changed[:MAX_IMAGES]
    found = []
    for rel in changed:
        name = rel.rsplit("/", 1)[-1][:80]
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # a name of raw bytes: it could reach neither the model nor a table
            problem = problem or "an image's file name is not valid UTF-8"
            continue
        data, why = read_regular(dirfd, rel, limits.max_file_mb * 2**20)
        if data is None:
            problem = problem or f"{name} {why}"
            continue
        size, why = image_size(data)
        if size is None:
            problem = problem or f"{name} is not a readable image ({why})"
            continue
        found.append(OutputImage(posixpath.join(OUTPUT_DIR, rel), size[0], size[1], data))
        size_problem = output_size_problem(*size)
        if size_problem and not problem:
            problem = f"{name}: {size_problem}"
    return found, problem


def read_regular(dirfd: int, rel: str, max_bytes: int) -> tuple[bytes | None, str]:
    """The bytes of a regular file at `rel` under the folder, opened once without following any link."""
    parts = rel.split("/")
    fds = []
    try:
        parent = dirfd
        for part in parts[:-1]:
            parent = os.open(part, _DIR, dir_fd=parent)
            fds.append(parent)
        fd = os.open(parts[-1], _FILE, dir_fd=parent)
        fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "is not a regular file"
        if st.st_size > max_bytes:
            return None, f"is over {max_bytes // 2**20} MB"
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), ""
    except OSError as exc:
        linked = exc.errno in (errno.ELOOP, errno.ENOTDIR)  # O_NOFOLLOW met a link (or a link as a folder)
        return None, "is a link or cannot be opened" if linked else f"cannot be read ({exc.strerror})"
    finally:
        for fd in fds:
            os.close(fd)


def image_size(data: bytes) -> tuple[tuple[int, int] | None, str]:
    """(width, height) from the header of image bytes, after refusing huge declared sizes and bad PNG CRCs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    return None, f"declares {width}x{height} pixels"
                if im.format == "PNG":
                    im.verify()  # walks every chunk's CRC without decoding pixels
    except Exception as exc:  # PIL raises many types (and DecompressionBombError) for hostile bytes
        return None, type(exc).__name__
    return (width, height), ""


def clean_text(text: object, cap: int, scrub: dict[str, str]) -> str:
    """A field of the reply as safe host text: a string, cut to `cap`, no lone surrogates, no host paths."""
    text = text if isinstance(text, str) else ""
    text = text[:cap]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    for host, shown in scrub.items():
        if host in text:
            text = text.replace(host, shown)
    return text


def result_from(reply: dict, images: list[OutputImage], problem: str, limits: Limits,
                scrub: dict[str, str]) -> ExecResult:
    """The ExecResult of a reply that passed `valid_reply`, with every field capped and cleaned."""
    status = Status(reply["status"])
    cap = limits.max_output_chars
    stdout, stderr = clean_text(reply["stdout"], cap, scrub), clean_text(reply["stderr"], cap, scrub)
    error = clean_text(reply["error"], MAX_ERROR_CHARS, scrub)
    if status == Status.OK and problem:
        status, error = Status.BAD_OUTPUT, clean_text(f"bad output image: {problem}", MAX_ERROR_CHARS, scrub)
    elif status == Status.OK and not images and not stdout.strip():
        status = Status.NO_OUTPUT
    return ExecResult(status, stdout, stderr, tuple(images), error, truncated=bool(reply["truncated"]))


def valid_reply(reply: object) -> bool:
    """The protocol's reply shape, exactly: code that forges its own reply gets no further than this."""
    return (isinstance(reply, dict) and set(reply) == {"status", "error", "stdout", "stderr", "truncated", "seq"}
            and reply["status"] in REPLY_STATUSES and isinstance(reply["truncated"], bool)
            and all(isinstance(reply[k], str) for k in ("error", "stdout", "stderr")))


def failure_message(status: Status, limits: Limits) -> str:
    if status == Status.TIMEOUT:
        return f"TimeoutError: execution exceeded the limit ({limits.timeout_s:g} s wall clock / {limits.cpu_s} s CPU)"
    if status == Status.MEMORY:
        return f"MemoryError: the session went over its memory limit ({limits.memory_mb} MB)"
    return "RuntimeError: the sandbox interpreter died (crash, signal or resource limit)"


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a folder and everything in it without recursion and without following links (a tree nested
    thousands deep, or with names past PATH_MAX, goes too). Errors are ignored: best effort, never raises."""
    names: list[str] = []
    try:
        fd = os.open(path, _DIR)
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    for _ in range(10_000_000):
        sub = None
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        pass
        except OSError:
            pass
        if sub is not None:
            try:
                child = os.open(sub, _DIR, dir_fd=fd)
            except OSError:
                child = None
            if child is not None:
                os.close(fd)
                fd = child
                names.append(sub)
                continue
        try:
            if not names:
                break
            parent = os.open("..", _DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
        except OSError:
            break
    os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
