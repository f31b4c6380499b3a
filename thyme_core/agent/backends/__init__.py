"""Generation backends behind one interface (base.Backend), chosen by name.

- transformers: Hugging Face Qwen2.5-VL on CPU or GPU; the tiny offline model when no model is given.
- vllm: vLLM in-process (GPU; the optional `gpu` extra).
- openai: any OpenAI-compatible chat endpoint, e.g. `vllm serve` (base URL as the model argument).
- scripted: replays a given response (tests, demos, recorded responses).
"""

from __future__ import annotations

from thyme_core.base.errors import ThymeError

BACKENDS = ("transformers", "vllm", "openai", "scripted")


def make_backend(name: str, model: str | None, home, *, responses=None, device: str = "cpu",
                 served_model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 min_pixels: int | None = None, max_pixels: int | None = None):
    """A backend by name. `model`: a checkpoint folder (None = the tiny model), or the base URL for openai.
    `min_pixels`/`max_pixels`: the image processor limits (None: the checkpoint's); every backend resizes
    fed-back images with them, as the trainer's processor does (tests/unit/test_processor_agreement.py)."""
    limits = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if name == "scripted":
        from thyme_core.agent.backends.scripted import ScriptedBackend

        if responses is None:
            raise ThymeError("the scripted backend needs --response-file")
        codec = None
        if model:
            from thyme_core.agent.codec import HFCodec
            from thyme_core.model import load_processor, resolve_model_path

            codec = HFCodec(load_processor(resolve_model_path(model, home), **limits), name=str(model))
        return ScriptedBackend(responses, codec)
    if name == "transformers":
        from thyme_core.agent.backends.hf import TransformersBackend

        return TransformersBackend.load(model, home, device=device, **limits)
    if name == "vllm":
        from thyme_core.agent.backends.vllm_backend import VLLMBackend

        return VLLMBackend.load(model, home, **limits)
    if name == "openai":
        from thyme_core.agent.backends.openai_http import OpenAIBackend

        return OpenAIBackend.load(model, home, served_model=served_model, api_key_env=api_key_env, **limits)
    raise ThymeError(f"unknown backend {name!r} (one of {', '.join(BACKENDS)})")
