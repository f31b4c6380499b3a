"""RL prompts from the catalog: `load_prompts(home, split, limit) -> list[RLPrompt]`.

The source is the `rl_samples` view (RL data in the released form, ingested by `thyme prepare`): its
`question` and `solution`, and its first stored image. Until a home has that view, or where it is empty,
prompts are derived from `sft_samples` with an image (the fallback):
- question: `question_orig` cleaned (agent/prompt.clean_question: without the `<image>` tag, the `User Image
  Path` / `User Image Size` lines and the output-format footer); the agent loop builds the user turn back
  from it (agent/prompt.user_turn) exactly as SFT examples do, with the home's image path;
- solution: the answer inside the SFT response's `<answer>` (agent.answers.extract_answer); samples without
  one are skipped;
- image: image_paths[0], the original image (home-relative).
Prompts come back ordered by id, so the first `limit` are the same on every call.
"""

from __future__ import annotations

from thyme_core import catalog
from thyme_core.agent.answers import extract_answer
from thyme_core.agent.prompt import clean_question
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.rl.rollout import RLPrompt

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
