"""`transformers`: Qwen2.5-VL through Hugging Face `generate`, on CPU or GPU.

Each call runs the whole trajectory so far: the compact ids expanded to one pad per image token, the images'
pixel values and grids, and `mm_token_type_ids` (without it transformers 5 silently falls back to 1-D
positions and an image in the middle of the sequence gets wrong M-RoPE positions). Sampling uses a
GenerationConfig built here (no top-k/top-p from the checkpoint's defaults), the image/video placeholders
and vision brackets are suppressed, and generation stops at the first stop string or EOS.
"""

from __future__ import annotations

from thyme_core.agent.backends.base import Backend, Generation, GenerationRequest, finish_of
from thyme_core.agent.codec import HFCodec
from thyme_core.agent.ledger import TokenLedger


class TransformersBackend(Backend):
    def __init__(self, model, processor, device: str = "cpu", name: str = "", trace: bool = False,
                 logits_processors=None):
        super().__init__(HFCodec(processor, name=name or "hf"), name="transformers", model=name)
        self.hf_model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.trace = trace  # keep each call's inputs and per-step logits (tests compare them)
        self.calls: list[dict] = []
        # request -> extra transformers LogitsProcessors (tests steer the tiny random model with one)
        self.logits_processors = logits_processors

    @classmethod
    def load(cls, model: str | None, home, device: str = "cpu", min_pixels: int | None = None,
             max_pixels: int | None = None, **kw) -> "TransformersBackend":
        from thyme_core.model import load_model_and_processor, resolve_model_path

        folder = resolve_model_path(model, home)
        hf_model, processor = load_model_and_processor(str(folder), home, device=device, min_pixels=min_pixels,
                                                       max_pixels=max_pixels)
        return cls(hf_model, processor, device=device, name=str(model or "tiny"), **kw)

    def model_inputs(self, ids: list[int], images) -> dict:
        """Tensors for a forward/generate over compact `ids` with `images` (FedImage, in pad order)."""
        return model_inputs(self.processor, self.codec.image_pad_id, ids, images, self.device, self.hf_model.dtype)

    def generate(self, request: GenerationRequest) -> Generation:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        inputs = self.model_inputs(request.ids, request.images)
        n_in = inputs["input_ids"].shape[1]
        codec, stops = self.codec, request.stop

        class StopStrings(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                tail = codec.decode(input_ids[0, n_in:].tolist()[-16:])
                return torch.tensor([any(s in tail for s in stops)], device=input_ids.device)

        sample = request.temperature > 0
        config = GenerationConfig(
            max_new_tokens=request.max_new_tokens, do_sample=sample, temperature=request.temperature if sample else None,
            top_k=(request.top_k or None) if sample else None, top_p=request.top_p if sample else None,
            repetition_penalty=request.repetition_penalty if sample else None, eos_token_id=list(codec.eos_ids), pad_token_id=codec.eos_ids[-1],
            suppress_tokens=list(codec.banned_ids), return_dict_in_generate=True, output_logits=self.trace,
        )
        if request.seed is not None and sample:
            torch.manual_seed(request.seed)
        extra = {}
        if self.logits_processors is not None:
            from transformers import LogitsProcessorList

            extra["logits_processor"] = LogitsProcessorList(self.logits_processors(request, n_in))
        with torch.no_grad():
            out = self.hf_model.generate(**inputs, generation_config=config,
                                         stopping_criteria=StoppingCriteriaList([StopStrings()]), **extra)
        new = out.sequences[0, n_in:].tolist()
        gen = finish_of(new, codec, stops, request.max_new_tokens)
        if self.trace:
            self.calls.append({"sample_id": request.sample_id, "inputs": {k: v.clone() for k, v in inputs.items()},
                               "generated": gen.ids,
                               "logits": [l[0].clone() for l in out.logits[:len(gen.ids)]]})
        return gen


def model_inputs(processor, image_pad_id: int, ids: list[int], images, device="cpu", dtype=None) -> dict:
    """Tensors for a Qwen2.5-VL forward over compact `ids` (one pad per image) with `images` (FedImage, in
    pad order): input_ids expanded to one pad per image token, pixel values and grids, mm_token_type_ids.
    Generation (TransformersBackend) and the RL training forward (rl/step.py) both build their inputs here,
    so the M-RoPE positions of a teacher-forced pass are the ones generation used."""
    import torch

    from thyme_core.agent.ledger import ImageSlot

    offsets = [i for i, t in enumerate(ids) if t == image_pad_id]
    if len(offsets) != len(images):
        raise ValueError(f"{len(offsets)} image pads for {len(images)} images")
    ledger = TokenLedger(image_pad_id, list(ids), [0] * len(ids),
                         [ImageSlot(o, im.width, im.height, "") for o, im in zip(offsets, images)])
    expanded = torch.tensor([ledger.expanded().ids], device=device)
    inputs = {"input_ids": expanded, "attention_mask": torch.ones_like(expanded),
              "mm_token_type_ids": (expanded == image_pad_id).to(torch.int32)}
    if images:
        pixels = processor.image_processor(images=[im.load() for im in images], return_tensors="pt")
        inputs["pixel_values"] = pixels["pixel_values"].to(device, dtype)
        inputs["image_grid_thw"] = pixels["image_grid_thw"].to(device)
        want = [[1, im.height // 14, im.width // 14] for im in images]
        if inputs["image_grid_thw"].tolist() != want:  # the ledger and the processor must agree
            raise ValueError(f"processor grids {inputs['image_grid_thw'].tolist()} != ledger {want}")
    return inputs
