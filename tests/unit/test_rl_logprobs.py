"""Chunked log-probs (thyme_core/rl/logprobs.py) against the full-logits computation, on the tiny Qwen2.5-VL.

The input has an image in the middle (built by TransformersBackend.model_inputs, so pixel values, grids and
mm_token_type_ids are the generation path's). Checked: values and parameter gradients equal the full
`log_softmax(model(**inputs).logits)` to 1e-5 for chunk sizes 1, 7 and larger than the sequence; no
(positions x vocabulary) tensor is kept for the backward; the DeepSpeed wrapper is looked through.
"""

import pytest
import torch
from PIL import Image

from thyme_core.base.errors import ThymeError
from thyme_core.rl.logprobs import sequence_logprobs


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.base.home import DataHome

    return TransformersBackend.load(None, DataHome(tmp_path_factory.mktemp("logprobs-home")).ensure())


@pytest.fixture(scope="module")
def inputs(backend, tmp_path_factory):
    from thyme_core.agent.backends.base import FedImage

    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.new("RGB", (84, 56), (200, 30, 60)).save(path)
    codec = backend.codec
    ids = (codec.encode("<|im_start|>user\nWhat colour is the sign?") + [codec.token_id("<|vision_start|>"),
           codec.image_pad_id, codec.token_id("<|vision_end|>")]
           + codec.encode("<|im_end|>\n<|im_start|>assistant\n<think>It is red.</think><answer>A</answer>"))
    out = backend.model_inputs(ids, [FedImage(path, 84, 56)])
    pad = (out["input_ids"][0] == codec.image_pad_id).nonzero()
    assert 0 < pad.min() and pad.max() < out["input_ids"].shape[1] - 10  # the image sits in the middle
    return out


def full_logprobs(model, inputs):
    logits = model(**inputs).logits.float()[0, :-1]
    return torch.log_softmax(logits, dim=-1).gather(-1, inputs["input_ids"][0, 1:, None])[:, 0]


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_values_equal_the_full_computation(backend, inputs, chunk):
    model = backend.hf_model
    with torch.no_grad():
        want = full_logprobs(model, inputs)
    got = sequence_logprobs(model, inputs, chunk_size=chunk)
    assert got.shape == (inputs["input_ids"].shape[1] - 1,) and got.dtype == torch.float32
    torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-5)


def grads(model, logp, weights):
    model.zero_grad(set_to_none=True)
    (logp * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_gradients_equal_the_full_computation(backend, inputs, chunk):
    model = backend.hf_model
    weights = torch.randn(inputs["input_ids"].shape[1] - 1, generator=torch.Generator().manual_seed(0))
    want = grads(model, full_logprobs(model, inputs), weights)
    got = grads(model, sequence_logprobs(model, inputs, chunk_size=chunk), weights)
    assert got.keys() == want.keys() and "lm_head.weight" in got and "model.visual.merger.mlp.0.weight" in got
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-5, msg=name)


def saved_vocab_tensors(model, fn) -> list[tuple[int, ...]]:
    """Shapes of tensors autograd keeps for the backward whose last dimension is the vocabulary, other than
    views of the parameters (the LM head's weight, transposed, costs nothing extra)."""
    vocab, shapes = 890, []
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.dim() >= 2 and t.shape[-1] == vocab and t.untyped_storage().data_ptr() not in params:
            shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return shapes


def test_no_logits_are_kept_for_the_backward(backend, inputs):
    model = backend.hf_model
    assert backend.hf_model.config.text_config.vocab_size == 890
    n = inputs["input_ids"].shape[1]
    assert (n - 1, 890) in saved_vocab_tensors(model, lambda: full_logprobs(model, inputs))  # the hook sees them
    assert saved_vocab_tensors(model, lambda: sequence_logprobs(model, inputs, chunk_size=7)) == []


class DeepSpeedEngine(torch.nn.Module):
    """A fake with the engine's class name, its `.module`, and its forward (the module's)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_engine_is_looked_through_and_bad_arguments_are_refused(backend, inputs):
    model = backend.hf_model
    with torch.no_grad():
        torch.testing.assert_close(sequence_logprobs(DeepSpeedEngine(model), inputs, chunk_size=5),
                                   full_logprobs(model, inputs), rtol=0, atol=1e-5)
        with pytest.raises(ThymeError, match="chunk_size must be >= 1"):
            sequence_logprobs(model, inputs, chunk_size=0)
        two = dict(inputs, input_ids=inputs["input_ids"].repeat(2, 1))
        with pytest.raises(ThymeError, match=r"one sequence, input_ids of shape \(1, T\), not \(2, "):
            sequence_logprobs(model, two)
