"""What SFT's and RL's config dataclasses share: copy-with-changes, JSON, and the config hash.

A run key holds `config_hash()`: every field that changes what is trained. Fields that only say where or
how often (a class's `NOT_HASHED`) stay out, so a rerun that only saves more often is the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED_DIR = REPO / "infra" / "deepspeed"


class RunConfig:
    """Mixed into a frozen config dataclass; the class sets NOT_HASHED (a frozenset of field names)."""

    NOT_HASHED: frozenset = frozenset()

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls(**json.loads(text))

    def config_hash(self) -> str:
        """The hashed fields; a `system_prompt` field by its file's text, not its name (agent/prompt.py)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_HASHED}
        if "system_prompt" in data:
            from thyme_core.agent.prompt import system_prompt_sha

            data["system_prompt"] = system_prompt_sha(data["system_prompt"])
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def deepspeed_path(self) -> Path:
        return deepspeed_config_path(self.deepspeed)


def deepspeed_config_path(name: str) -> Path:
    """A DeepSpeed config by name (infra/deepspeed/<name>.json) or a path to a .json file."""
    path = Path(name)
    return path if path.suffix == ".json" else DEEPSPEED_DIR / f"{name}.json"
