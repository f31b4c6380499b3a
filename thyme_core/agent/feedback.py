"""What one code block's execution feeds back to the model.

- An image: each path the code printed that names a file it saved (Thyme prints the saved path), in order;
  if it printed no such path but saved images and printed nothing else, the last image saved.
- Text: whatever else it printed (cut to max_output_chars).
- An error: the sandbox's "Type: message" (or its status message), as the model should see it.
Images are the bytes the sandbox read once from the session's folder (never a path into it), stored in the
data home's image store by sha256. Output the store refuses (a broken image that got past the sandbox's
header checks) is fed back as an error, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thyme_core.agent.config import AgentConfig
from thyme_core.base.errors import ThymeError

NO_CODE = "no_code"


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str
    stdout: str
    duration_s: float
    images: list[tuple[str, Path, str]]  # (sha256, stored host path, home-relative path)
    text: str  # the text part of the feedback
    kind: str  # image / text / error


def execute(code: str, sample, pool, session_id: str, config: AgentConfig, store_image) -> Outcome:
    if not code.strip():
        msg = "Error: no code found between <code> and </code>"
        return Outcome(NO_CODE, msg, "", 0.0, [], msg, "error")
    result = pool.run(code, [sample.image], session_id)  # the pool's own limits (Agent's pool: from config)
    status = str(result.status)
    if status != "ok":
        msg = (result.error or result.stderr.strip() or status)[-config.max_output_chars:]
        return Outcome(status, result.error, result.stdout, result.duration_s, [], msg, "error")
    printed_images, lines = [], []
    for line in result.stdout.splitlines():
        image = result.printed_image(line)
        if image is not None and image not in printed_images:
            printed_images.append(image)
        else:
            lines.append(line)
    text = "\n".join(lines).strip()[: config.max_output_chars]
    if not printed_images and result.images and not text:
        printed_images = [result.images[-1]]
    try:
        stored = [store_image(im.data) for im in printed_images[: config.max_images_per_output]]
    except ThymeError as exc:
        msg = f"Error: the saved image cannot be used ({str(exc)[:200]})"
        return Outcome("bad_output", msg, result.stdout, result.duration_s, [], msg, "error")
    kind = "image" if stored else "text"
    return Outcome(status, "", result.stdout, result.duration_s, stored, text, kind)
