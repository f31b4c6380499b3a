"""RL prompts from the catalog: `load_prompts(home, split, limit) -> list[RLPrompt]`.

The source is the `rl_samples` view (RL data in the released form, ingested by `thyme prepare`): its
`question` and `solution`, and its first stored image. Until a home has that view, or where it is empty,
prompts are derived from `sft_samples` with an image (the fallback):
- question: `question_orig` without the `<image>` line, the `User Image Path` / `User Image Size` lines (any
  decoration) and the output-format footer (the agent adds its own system prompt and the real image path);
- solution: the answer inside the SFT response's `<answer>` (agent.answers.extract_answer); samples without
  one are skipped;
- image: image_paths[0], the original image (home-relative).
Prompts come back ordered by id, so the first `limit` are the same on every call.
"""

from __future__ import annotations

import re

from thyme_core import catalog
from thyme_core.agent.answers import extract_answer
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.rl.rollout import RLPrompt

_IMAGE_LINE = re.compile(r"^\W*User Image (Path|Size)\b", re.IGNORECASE)
_FOOTER = re.compile(r"^\W*Output Format\b", re.IGNORECASE)


def clean_question(question: str) -> str:
    """The question a user asked, without the image lines and the output-format footer.

    >>> clean_question('<image>\\nWhat is it?\\n**User Image Path:** "a.jpg"\\nUser Image Size: 3x4\\n\\n'
    ...                '### **Output Format (strict adherence required):**\\n<think>...</think>')
    'What is it?'
    """
    kept = []
    for line in question.splitlines():
        if _FOOTER.match(line):
            break  # the footer and its template lines run to the end
        if line.strip() == "<image>" or _IMAGE_LINE.match(line):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _has_view(home: DataHome, name: str) -> bool:
    _, rows = catalog.query(home, "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name])
    return bool(rows[0][0])


def _where(split: str) -> tuple[str, list]:
    return ("has_image AND split = ?", [split]) if split else ("has_image", [])


def from_rl_samples(home: DataHome, split: str, limit: int) -> list[RLPrompt]:
    where, params = _where(split)
    sql = f"SELECT id, question, solution, image_paths FROM rl_samples WHERE {where} ORDER BY id"
    _, rows = catalog.query(home, sql + (" LIMIT ?" if limit else ""), params + ([limit] if limit else []))
    return [RLPrompt(i, home.absolute(paths[0]), clean_question(q), s) for i, q, s, paths in rows]


def from_sft_samples(home: DataHome, split: str, limit: int) -> list[RLPrompt]:
    where, params = _where(split)
    _, rows = catalog.query(home, f"SELECT id, question_orig, response, image_paths FROM sft_samples "
                                  f"WHERE {where} ORDER BY id", params)
    out = []
    for i, question, response, paths in rows:
        answer = extract_answer(response)
        if answer:
            out.append(RLPrompt(i, home.absolute(paths[0]), clean_question(question), answer))
        if limit and len(out) == limit:
            break
    return out


def load_prompts(home: DataHome, split: str = "", limit: int = 0) -> list[RLPrompt]:
    """RL prompts with an image: from rl_samples when the home has any, else derived from sft_samples."""
    prompts = from_rl_samples(home, split, limit) if _has_view(home, "rl_samples") else []
    if not prompts:
        prompts = from_sft_samples(home, split, limit)
    if not prompts:
        raise ThymeError(f"no RL prompts with an image{f' in split {split!r}' if split else ''} in {home.root} "
                         "(run `thyme prepare` first)")
    return prompts
