"""Run generated Thyme code in-process, so the processed images in the data are the code's true outputs.

This is NOT a sandbox: it only runs code this package generated itself (trusted), in the current process.
It performs the two substitutions a Thyme sandbox does: OUTPUT_DIR becomes a scratch folder, and a literal
`image_path = "..."` (stale or invented in the data) is rebound to the file that holds the original image,
unless the literal names an earlier output under OUTPUT_DIR. Blocks of one trajectory share one namespace,
as in Thyme (later code sees earlier variables). Printed paths are mapped back to OUTPUT_DIR, which is what
the response's <sandbox_output> shows. Tests re-run the same function to check outputs are reproducible.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from thyme_core.thyme_format import IMAGE_EXTENSIONS, OUTPUT_DIR

_IMAGE_PATH_RE = re.compile(r"^(?P<lhs>[ \t]*image_path\s*=\s*)(?P<q>[\"'])(?P<path>[^\"'\n]*)(?P=q)", re.M)


@dataclass
class BlockRun:
    """What one code block did: its printed text (paths as the model sees them) and saved images."""

    stdout: str
    images: list[bytes] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)  # the OUTPUT_DIR paths printed for them


class Runner:
    """Runs the code blocks of one trajectory against one original image, in a scratch folder."""

    def __init__(self, workdir: Path, original: bytes | None, original_name: str = "original.jpg"):
        self.workdir = Path(workdir)
        self.out_dir = self.workdir / "out"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.input_path = None
        if original is not None:
            self.input_path = self.workdir / original_name
            self.input_path.write_bytes(original)
        self.namespace: dict = {"__name__": "__thyme_synth__"}

    def localize(self, code: str) -> str:
        """The code as it runs here: OUTPUT_DIR mapped to the scratch folder, image_path to the original."""
        code = code.replace(OUTPUT_DIR, str(self.out_dir))
        if self.input_path is None:
            return code

        def rebind(m: re.Match) -> str:
            if m.group("path").startswith(str(self.out_dir)):
                return m.group(0)
            return f"{m.group('lhs')}{str(self.input_path)!r}"

        return _IMAGE_PATH_RE.sub(rebind, code)

    def run(self, code: str) -> BlockRun:
        buf = io.StringIO()
        # The code's own print writes to our buffer: a host that patches builtins.print (Prefect's
        # log_prints) must not swallow the printed paths the sample is built from.
        self.namespace["print"] = functools.partial(builtins.print, file=buf)
        with contextlib.redirect_stdout(buf):
            exec(compile(self.localize(code), "<thyme-code>", "exec"), self.namespace)  # noqa: S102 (our own code)
        printed = buf.getvalue().replace(str(self.out_dir), OUTPUT_DIR)
        result = BlockRun(printed.strip())
        for line in buf.getvalue().splitlines():
            path = Path(line.strip())
            if line.strip().lower().endswith(IMAGE_EXTENSIONS) and path.parent == self.out_dir:
                result.images.append(path.read_bytes())
                result.image_names.append(f"{OUTPUT_DIR}/{path.name}")
        return result


def run_blocks(codes: list[str], original: bytes | None, workdir: Path) -> list[BlockRun]:
    """Run a trajectory's code blocks in order in one namespace; see the module docstring."""
    runner = Runner(workdir, original)
    return [runner.run(code) for code in codes]
