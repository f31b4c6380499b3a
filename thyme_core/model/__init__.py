"""Models: the loader shared by training, the agent loop and RL, and the tiny offline Qwen2.5-VL."""

from thyme_core.model.loader import (
    is_tiny, load_model, load_model_and_processor, load_processor, pick_attention, resolve_model_path,
    weights_fingerprint,
)
from thyme_core.model.tiny import TINY_VERSION, build_tiny_model, ensure_tiny_model, tiny_model_dir

__all__ = [
    "TINY_VERSION", "build_tiny_model", "ensure_tiny_model", "is_tiny", "load_model", "load_model_and_processor",
    "load_processor", "pick_attention", "resolve_model_path", "tiny_model_dir",
    "weights_fingerprint",
]
