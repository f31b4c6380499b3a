"""Prepare one RL record (the released form: messages, images, solution, question) into an RlSample.

The same guarantees as SFT (shards.py): every image is decoded, checked and stored once by content hash
with the same Reject/Repair codes; a missing or null `messages`, `solution` or `question` (or a message
without string role/content) is Reject.BAD_FIELD; a null image list means a text-only prompt, as in SFT.
`User Image Path:` lines in the messages and the question are rewritten to the stored image[0] by the same
rule as SFT questions (paths.rewrite_question_paths); the `<image>` placeholder stays as it is.

The prompt is stored as JSON of the messages, each reduced to {role, content}.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from thyme_core.images import store as img
from thyme_core.images.values import as_list, prepare_values
from thyme_core.prepare.paths import rewrite_question_paths
from thyme_core.base.reasons import Reject, Rejected, require_strings
from thyme_core.catalog.schema import RlSample


def build_rl_sample(record: dict | str, split: str, image_config: img.ImageConfig, base: Path | None = None,
                    fetch=None) -> tuple[RlSample, list[img.PreparedImage]]:
    """One RL record -> (sample, images to store), or Rejected with the reason. Nothing is written here.
    Image values in any form images/values.py reads (the released data names files: relative to `base`)."""
    messages, question, solution, raw_images = _rl_fields(record)
    prepared = prepare_values(raw_images, image_config, base, fetch)
    stored = [p.relpath for p in prepared]
    rewritten = [{"role": m["role"], "content": _rewrite(m["content"], stored, f"messages[{i}]")}
                 for i, m in enumerate(messages)]
    shas = [p.sha256 for p in prepared]
    ident = hashlib.sha256("\0".join([split, question, solution, *shas]).encode()).hexdigest()[:32]
    sample = RlSample(
        id=ident, split=split, source_file="", source_row=-1,
        question=_rewrite(question, stored, "question"), prompt=json.dumps(rewritten, ensure_ascii=False),
        solution=solution, image_sha256=shas, image_paths=stored, has_image=bool(shas), shard="",
    )
    return sample, prepared


def _rewrite(text: str, stored: list[str], where: str) -> str:
    result = rewrite_question_paths(text, stored)
    if result.problem is not None:
        raise Rejected(result.problem.reason, f"{where}: {result.problem.detail}")
    return result.question


def _rl_fields(record: dict | str) -> tuple[list[dict], str, str, list]:
    record = require_strings(record, ("question", "solution"))
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        what = type(messages).__name__ if "messages" in record else "missing"
        raise Rejected(Reject.BAD_FIELD, f"messages is {what if messages != [] else 'empty'}, expected a list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise Rejected(Reject.BAD_FIELD, f"messages[{i}] is not a {{role: str, content: str}} object")
    images = as_list(record["images"] if "images" in record else record.get("image"))
    if images is None:
        images = []  # a text-only prompt, as SFT treats a null image list
    if not isinstance(images, list):
        raise Rejected(Reject.BAD_FIELD, f"images is {type(images).__name__}, expected a list")
    return messages, record["question"], record["solution"], images
