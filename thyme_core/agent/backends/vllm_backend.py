"""`vllm`: vLLM in-process on GPU (install the `gpu` extra). vLLM is imported only here.

Prompts go in as the ledger's compact token ids (one `<|image_pad|>` per image) with the images already
resized to their ledger sizes: vLLM expands each pad itself (expanded ids would be expanded twice). The
image processor gets the same min/max pixels as the ledger, so both compute the same grid. Placeholders are
banned through logit_bias; stop strings are included in the output, and the sampled token ids are taken as
they are. The pixel limits come from the run (RL passes the trainer's processor), never silently from the
checkpoint's saved processor. `generate_many` sends a lockstep step's requests as one `llm.generate` call (a list of prompts,
one SamplingParams each, so each keeps its own seed, temperature and stops); vLLM schedules them together.
"""

from __future__ import annotations

from thyme_core.agent.backends.base import Backend, Generation, GenerationRequest, finish_of
from thyme_core.agent.codec import HFCodec
from thyme_core.base.errors import ThymeError


class VLLMBackend(Backend):
    batched = True

    def __init__(self, llm, codec: HFCodec, name: str = ""):
        super().__init__(codec, name="vllm", model=name)
        self.llm = llm

    @classmethod
    def load(cls, model: str | None, home, max_images: int = 8, gpu_memory_utilization: float = 0.85,
             processor=None, min_pixels: int | None = None, max_pixels: int | None = None,
             **llm_kwargs) -> "VLLMBackend":
        """`processor`: the trainer's (RL), so rollouts and training resize images alike; else the
        checkpoint's, with `min_pixels`/`max_pixels` when given. vLLM's own processor gets the same limits."""
        try:
            from vllm import LLM
        except ImportError:
            raise ThymeError("the vllm backend needs vLLM on a GPU machine: pip install '.[gpu]'") from None
        from thyme_core.model import load_processor, resolve_model_path

        folder = str(resolve_model_path(model, home))
        processor = processor or load_processor(folder, min_pixels=min_pixels, max_pixels=max_pixels)
        codec = HFCodec(processor, name=folder)
        llm = LLM(model=folder, limit_mm_per_prompt={"image": max_images},
                  mm_processor_kwargs={"min_pixels": codec.min_pixels, "max_pixels": codec.max_pixels},
                  gpu_memory_utilization=gpu_memory_utilization, **llm_kwargs)
        return cls(llm, codec, name=str(model or "tiny"))

    def _params(self, request: GenerationRequest):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=request.temperature, max_tokens=request.max_new_tokens, stop=list(request.stop),
            top_p=request.top_p, top_k=request.top_k or -1, repetition_penalty=request.repetition_penalty,
            include_stop_str_in_output=True, stop_token_ids=list(self.codec.eos_ids), seed=request.seed,
            logit_bias={t: -100.0 for t in self.codec.banned_ids}, skip_special_tokens=False,
        )

    def generate(self, request: GenerationRequest) -> Generation:
        return self.generate_many([request])[0]

    def generate_many(self, requests: list[GenerationRequest]) -> list[Generation]:
        prompts = []
        for request in requests:
            prompt = {"prompt_token_ids": list(request.ids)}
            if request.images:
                prompt["multi_modal_data"] = {"image": [im.load() for im in request.images]}
            prompts.append(prompt)
        outs = self.llm.generate(prompts, [self._params(r) for r in requests], use_tqdm=False)
        if len(outs) != len(requests):
            raise ThymeError(f"vLLM returned {len(outs)} outputs for {len(requests)} prompts")
        return [finish_of(list(out.outputs[0].token_ids), self.codec, r.stop, r.max_new_tokens)
                for out, r in zip(outs, requests)]
