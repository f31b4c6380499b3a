"""The backbone's hidden states from one forward of a whole model, and losses over the LM head in chunks.

For a 7B Qwen2.5-VL (vocabulary 152,064) a 10,240-token sequence has ~6 GB of fp32 logits, kept again for
the backward of the softmax. Both trainers avoid them: `backbone_states` runs the model once with
logits_to_keep=1 and takes the base model's output with a forward hook; the LM head and a fp32 softmax are
then applied `chunk` positions at a time, each chunk under torch.utils.checkpoint, so only its small result
is stored and the backward recomputes that chunk's logits. Peak extra memory is about chunk x V instead of
T x V. RL takes per-token log-probs (rl/logprobs.py); SFT the summed cross-entropy of its labelled
positions (`labelled_nll_sum`, used by sft/loop.py), where only labelled positions reach the head at all.

Covered: HF causal LMs whose forward is `lm_head(model.model(...)[0])` (Qwen2.5-VL in transformers 5: pixel
values, grids and mm_token_type_ids pass through to the base model), plain or inside a DeepSpeed engine
(under ZeRO-3 the LM head is fetched per chunk by ZeRO's own hooks, also in the recompute). Not covered: logit
soft-capping or scaling between the backbone and the head.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

IGNORE = -100
_WRAPPERS = ("DeepSpeedEngine", "DistributedDataParallel")


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside a DeepSpeed engine (or DDP, or any non-module wrapper with `.module`, as the tests'
    fake engines); the module itself otherwise. Names then carry no "module." prefix."""
    while any(c.__name__ in _WRAPPERS for c in type(module).__mro__) or (
            not isinstance(module, torch.nn.Module) and hasattr(module, "module")):
        module = module.module
    return module


def backbone_states(model, inputs: dict) -> tuple[torch.Tensor, torch.nn.Module]:
    """(last hidden states (B, T, H), the LM head) from one forward of the WHOLE model (an engine or a module)
    with logits_to_keep=1, the base model's output taken by a forward hook.

    Not `model.model(...)` directly: under ZeRO-3 the root module's forward hooks are part of DeepSpeed's
    parameter bookkeeping, and skipping them gave gradients 6.8x off in the two-rank RL test
    (tests/integration/test_train_rl.py compares the update with a one-process run)."""
    inner = unwrap(model)
    got: dict[str, torch.Tensor] = {}

    def keep(module, args, output):
        got["hidden"] = output[0]  # returns None: the output is left as it is

    handle = inner.model.register_forward_hook(keep)
    try:
        model(**{"use_cache": False, **inputs}, logits_to_keep=1)
    finally:
        handle.remove()
    return got["hidden"], inner.get_output_embeddings()


def _chunk_nll(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")


def labelled_nll_sum(model, inputs: dict, labels: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Summed next-token cross-entropy (fp32) over every position whose label is not IGNORE: the numerator
    of the HF loss (labels shifted by one inside), without ever holding more than `chunk` rows of logits."""
    hidden, head = backbone_states(model, inputs)
    targets = labels[:, 1:].to(hidden.device)
    where = (targets != IGNORE).nonzero(as_tuple=True)
    rows, wanted = hidden[:, :-1][where], targets[where]  # (N, H), (N,): labelled positions only
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], chunk):
        h, t = rows[start:start + chunk], wanted[start:start + chunk]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_nll, head, h, t, use_reentrant=False)
        else:
            total = total + _chunk_nll(head, h, t)
    return total
