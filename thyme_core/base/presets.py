"""Config dataclasses: fields with help text, and YAML presets (infra/presets/<name>.yaml; each file's header
names its command).

One loader for every config kind (SFT, RL, ...): the preset's keys, then the caller's overrides (None means
"not given"), must all be fields of the dataclass; an unknown key is an error naming the file, never ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from pathlib import Path
from typing import TypeVar

import yaml

from thyme_core.base.errors import ThymeError

PRESETS_DIR = Path(__file__).resolve().parents[2] / "infra" / "presets"
T = TypeVar("T")


def setting(default, help: str, **kw):
    """A dataclass field whose help text `help_text` and the `--help-config` flags print."""
    return field(default=default, metadata={"help": help}, **kw)


def load_preset(cls: type[T], name_or_path: str, **overrides) -> T:
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ThymeError(f"no preset {path}")
    data = yaml.safe_load(path.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ThymeError(f"{path}: unknown keys {sorted(unknown)}")
    return cls(**{k: _coerce(cls, k, v, path) for k, v in data.items()})


def _coerce(cls: type, key: str, value, where: Path):
    """YAML reads `2e-5` (no dot) as a string: a number field given a string takes it as a number, or says
    which key is wrong, instead of a TypeError deep inside the run."""
    if not isinstance(value, str):
        return value
    try:
        hint = typing.get_type_hints(cls).get(key)
    except Exception:  # (an annotation that cannot be resolved here: leave the value to the class)
        return value
    kinds = set(typing.get_args(hint)) or {hint}
    for kind in (int, float):
        if kind in kinds and str not in kinds:
            try:
                return kind(value)
            except ValueError:
                raise ThymeError(f"{where}: {key} takes a number, not {value!r}") from None
    return value


def help_text(cls: type, name_width: int = 24, default_width: int = 36) -> str:
    """Every field with its default and help, for `--help-config`."""
    return "\n".join(f"{f.name:{name_width}} {f.default!r:>{default_width}}  {f.metadata['help']}"
                     for f in dataclasses.fields(cls))
