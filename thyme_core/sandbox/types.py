"""The sandbox's two small record types: what a run may use (Limits) and what it produced (ExecResult).

Statuses are reason codes that land in SQL as they are, so "why did this execution fail" is one GROUP BY.
Everything in an ExecResult is bounded (text by Limits.max_output_chars or MAX_ERROR_CHARS, images by
MAX_IMAGES and Limits.max_file_mb) and owned by the host: image bytes were read once from the session's
folder, so nothing downstream opens a path inside a session.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"  # ran to the end and produced output (printed text and/or a valid image)
    ERROR = "error"  # the code raised; `error` holds "Type: message" as the model should see it
    TIMEOUT = "timeout"  # wall-clock or CPU-time limit hit; the interpreter was killed and replaced
    MEMORY = "memory"  # the memory limit was hit (MemoryError or an allocation failure)
    KILLED = "killed"  # the interpreter died (signal, crash, broken protocol); it was replaced
    NO_OUTPUT = "no_output"  # ran to the end but printed nothing and saved no image
    BAD_OUTPUT = "bad_output"  # saved an image Qwen2.5-VL cannot take (side < 28 px, aspect > 200)


MAX_ERROR_CHARS = 2000  # the error text (also the host's own messages)
MAX_IMAGES = 16  # images collected from one run, newest changes last; more is a BAD_OUTPUT
MAX_RETRY_REASON_CHARS = 300

# Statuses after which the session's interpreter is discarded (its state is gone).
FATAL = frozenset({Status.TIMEOUT, Status.MEMORY, Status.KILLED})


@dataclass(frozen=True)
class Limits:
    """What one execution may use. Defaults fit Thyme's crop / enhance / compute code with a wide margin.

    timeout_s, cpu_s and max_output_chars apply to each run; memory_mb, max_processes and max_file_mb are
    set when the session's interpreter starts (its first run, or the first run after a failure).
    """

    timeout_s: float = field(default=10.0, metadata={"help": "wall-clock seconds per run; the process group is then killed"})
    cpu_s: int = field(default=10, metadata={"help": "CPU seconds per run (RLIMIT_CPU, raised per run)"})
    memory_mb: int = field(default=2048, metadata={"help": "address space added on top of the warm interpreter (RLIMIT_AS)"})
    max_processes: int = field(default=16, metadata={"help": "processes+threads the session may hold (RLIMIT_NPROC)"})
    max_file_mb: int = field(default=64, metadata={"help": "largest file the code may write (RLIMIT_FSIZE)"})
    max_output_chars: int = field(default=64_000, metadata={"help": "stdout and stderr are each cut to this many characters"})
    disk_mb: int = field(default=256, metadata={"help": "size of the session's output tmpfs (all files together)"})

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_processes", "max_file_mb", "max_output_chars",
                     "disk_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OutputImage:
    """An image the code saved: the path the code used for it, its size, and its bytes (read once)."""

    path: str  # inside the sandbox, e.g. /mnt/data/temp_processed_images/crop.jpg
    width: int
    height: int
    data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class ExecResult:
    status: Status
    stdout: str = ""
    stderr: str = ""
    images: tuple[OutputImage, ...] = ()
    error: str = ""
    duration_s: float = 0.0
    truncated: bool = False  # stdout or stderr was cut at Limits.max_output_chars
    fresh_interpreter: bool = False  # this run started a new interpreter (first run, or after a failure)
    retry_reason: str = ""  # set when the interpreter was found dead and the run was retried in a fresh one

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def printed_image(self, line: str) -> OutputImage | None:
        """The image of this run a printed line names (Thyme prints the saved path), if any."""
        text = line.strip().strip("'\"")
        if not text.startswith("/"):
            return None
        text = posixpath.normpath(text)
        return next((im for im in self.images if im.path == text), None)

    def to_json_dict(self) -> dict:
        """The CLI's JSON shape: `images` as a list of paths, sizes alongside."""
        return {
            "status": str(self.status),
            "stdout": self.stdout,
            "stderr": self.stderr,
            "images": [im.path for im in self.images],
            "image_sizes": [[im.width, im.height] for im in self.images],
            "error": self.error,
            "duration_s": round(self.duration_s, 6),
            "truncated": self.truncated,
            "fresh_interpreter": self.fresh_interpreter,
            "retry_reason": self.retry_reason,
        }
