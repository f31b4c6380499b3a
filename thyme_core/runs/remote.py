"""Checkpoints in the store (placeholder until the preemption piece lands)."""

from __future__ import annotations

from pathlib import Path


def uploader_for(run_dir: Path):
    return None
