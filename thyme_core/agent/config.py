"""Settings of the agent loop, with help text; `__post_init__` rejects impossible values.

AgentConfig is the one declaration of every loop and sampling setting. Configs that run the loop (RL rollouts:
rl/rollout.py RolloutConfig, and RlConfig after it) extend it, so each of its fields is settable wherever
they are (a preset, `--set`), and `pick` builds the AgentConfig back by field name: nothing is copied by hand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import TypeVar

from thyme_core.base.errors import ThymeError

T = TypeVar("T")


def from_settings(settings: dict) -> "AgentConfig":
    """An AgentConfig from settings by field name (flow parameters, JSON); a wrong name is answered with the
    valid ones."""
    names = {f.name for f in fields(AgentConfig)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ThymeError(f"unknown agent settings {unknown}; valid: {', '.join(sorted(names))}")
    return AgentConfig(**settings)


def pick(cls: type[T], source, **changes) -> T:
    """A `cls` from the same-named fields of `source` (a dataclass that has them all), with `changes`."""
    return cls(**{**{f.name: getattr(source, f.name) for f in fields(cls) if f.init}, **changes})


@dataclass(frozen=True)
class AgentConfig:
    max_rounds: int = field(default=5, metadata={"help": "code executions per trajectory; one more </code> ends it"})
    max_length: int = field(default=8192, metadata={"help": "context budget in tokens (prompt, images, output)"})
    max_new_tokens: int = field(default=2048, metadata={"help": "tokens per generation call"})
    text_temperature: float = field(default=0.0, metadata={"help": "sampling temperature outside <code> (0 = greedy)"})
    code_temperature: float = field(default=0.0, metadata={"help": "sampling temperature from <code> to </code>"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling for sampled segments (1 = off)"})
    top_k: int = field(default=0, metadata={"help": "top-k for sampled segments (0 = off)"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "for sampled segments (1 = off); greedy "
                                                                     "segments (code at temperature 0) stay argmax"})
    seed: int = field(default=0, metadata={"help": "sampling seed (per trajectory: seed + a hash of the sample id)"})
    reserve_tokens: int = field(default=32, metadata={"help": "tokens left free after a fed-back image"})
    max_output_chars: int = field(default=2000, metadata={"help": "sandbox text fed back is cut to this"})
    max_images_per_output: int = field(default=2, metadata={"help": "images one execution may feed back"})
    max_images: int = field(default=0, metadata={"help": "images per trajectory, the prompt's included (0 = no "
                                                         "limit); an output past it ends the trajectory"})
    timeout_s: float = field(default=10.0, metadata={"help": "wall-clock seconds per code execution"})
    isolation: str = field(default="bwrap", metadata={"help": "sandbox isolation: bwrap, or none (trusted code only)"})
    system_prompt: str = field(default="", metadata={"help": "system prompt file ('' = infra/prompts/system.txt)"})

    def __post_init__(self):
        for name in ("max_rounds", "max_output_chars", "reserve_tokens", "max_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"AgentConfig.{name} must be >= 0")
        for name in ("max_length", "max_new_tokens", "timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"AgentConfig.{name} must be positive")
        if min(self.text_temperature, self.code_temperature) < 0:
            raise ValueError("temperatures must be >= 0")
        if not (0 < self.top_p <= 1) or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError("top_p must be in (0, 1], top_k >= 0, repetition_penalty > 0")
        if self.isolation not in ("bwrap", "none"):
            raise ValueError(f"isolation must be bwrap or none, not {self.isolation!r}")

    @property
    def split_temperatures(self) -> bool:
        return self.text_temperature != self.code_temperature

    def fingerprint(self) -> str:
        """Hash of every setting that changes a trajectory (isolation does not; the system prompt by its
        text). max_images 0 (no limit, the behaviour from before the field existed) is left out."""
        from thyme_core.agent.prompt import system_prompt_sha

        d = asdict(self)
        d.pop("isolation")
        d["system_prompt"] = system_prompt_sha(self.system_prompt)  # the text, not the file name
        if not d["max_images"]:
            d.pop("max_images")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
