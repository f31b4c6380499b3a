"""Token log-probabilities of a whole trajectory without materialising its (T x V) logits.

For a 7B policy (vocabulary ~152k) and a ~10k-token trajectory, fp32 logits alone are ~6 GB, kept again for
the backward of log-softmax. `sequence_logprobs` runs the model once for the backbone's hidden states (the
whole model with logits_to_keep=1, model/forward.py `backbone_states` says why not the backbone alone), then applies
the LM head and a fp32 log-softmax to `chunk_size` positions at a time; each chunk runs under
torch.utils.checkpoint, so only its (chunk,) result is stored and the backward recomputes that chunk's
logits. Peak extra memory is about chunk_size x V instead of T x V (the backbone's activations are as
before). The numbers are grpo.token_logprobs' (gather minus logsumexp, fp32, temperature 1), i.e. those of
the full `model(**inputs).logits` up to float rounding.

Covered: HF causal LMs whose forward is `lm_head(model.model(...)[0])` (Qwen2.5-VL in transformers 5, where
pixel_values / image_grid_thw / mm_token_type_ids pass through to the base model), plain or inside a
DeepSpeed engine (its `.module`; under ZeRO-3 the LM head is fetched per chunk by ZeRO's own hooks, also in
the recompute). Not covered: batches of more than one sequence, logit soft-capping or scaling between the
backbone and the head, temperatures other than 1.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from thyme_core.base.errors import ThymeError
from thyme_core.rl.grpo import token_logprobs
from thyme_core.model.forward import backbone_states


def _chunk_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return token_logprobs(head(hidden), targets)


def sequence_logprobs(model, inputs: dict, chunk_size: int = 1024) -> torch.Tensor:
    """(T-1,) float32: log p(input_ids[t+1] | input_ids[<= t]) at temperature 1, for a batch of one.

    `inputs` are the model's forward kwargs (input_ids, attention_mask, mm_token_type_ids, pixel_values,
    image_grid_thw, ...), e.g. from TransformersBackend.model_inputs. Differentiable; under no_grad no
    checkpointing is done.
    """
    if chunk_size < 1:
        raise ThymeError(f"chunk_size must be >= 1, not {chunk_size}")
    ids = inputs["input_ids"]
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ThymeError(f"sequence_logprobs takes one sequence, input_ids of shape (1, T), not {tuple(ids.shape)}")
    hidden, head = backbone_states(model, inputs)
    hidden, targets = hidden[:, :-1], ids[:, 1:]
    parts = []
    for start in range(0, targets.shape[1], chunk_size):
        h, t = hidden[:, start:start + chunk_size], targets[:, start:start + chunk_size]
        if torch.is_grad_enabled():
            parts.append(checkpoint(_chunk_logprobs, head, h, t, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(head, h, t))
    if not parts:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(parts, dim=1)[0]
