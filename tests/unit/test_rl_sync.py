"""Weight sync (thyme_core/rl/sync.py) on the tiny Qwen2.5-VL and on hand-written fakes, no DeepSpeed.

One test per guarantee: a synced copy is bit-equal and computes the same logits; a missing, unknown or
mis-shaped tensor is an error naming it, raised only at finish (never mid-stream, which would hang the
other ranks under ZeRO-3); tied weights count once; persistent buffers travel and non-persistent ones do
not; an engine wrapper adds no "module." prefix; VLLMSink streams chunks of copies into a stand-in with
vLLM's attribute path and resets its prefix cache last. The ZeRO-3 gather itself: tests/integration.
"""

import copy

import pytest
import torch

from thyme_core.base.errors import ThymeError
from thyme_core.rl.sync import HFSink, VLLMSink, gathered_weights, sync_weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from thyme_core.base.home import DataHome
    from thyme_core.model import load_model_and_processor

    model, _ = load_model_and_processor(None, DataHome(tmp_path_factory.mktemp("sync-home")).ensure())
    return model.eval()


def perturbed(model):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    return other


def logits(model):
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_synced_copy_is_bit_equal_and_gives_the_same_logits(tiny):
    target = perturbed(tiny)
    assert not torch.equal(logits(target), logits(tiny))
    stats = sync_weights(tiny, HFSink(target))
    source, got = tiny.state_dict(), target.state_dict()
    assert source.keys() == got.keys()
    assert all(torch.equal(source[k], got[k]) for k in source)
    assert torch.equal(logits(target), logits(tiny))
    assert stats["tensors"] == len(source)  # no persistent buffers, no tied weights in the tiny model
    assert stats["bytes"] == sum(t.numel() * 4 for t in source.values()) and stats["seconds"] >= 0


def test_target_dtype_wins(tiny):
    target = perturbed(tiny).to(torch.bfloat16)
    sync_weights(tiny, HFSink(target))
    assert all(torch.equal(target.state_dict()[k], v.to(torch.bfloat16)) for k, v in tiny.state_dict().items())


def test_missing_tensor_is_named_at_finish(tiny):
    sink = HFSink(perturbed(tiny))
    for name, tensor in gathered_weights(tiny):
        if name != "model.visual.merger.mlp.0.weight":
            sink.write(name, tensor)
    with pytest.raises(ThymeError, match=r"1 target tensors not written: model\.visual\.merger\.mlp\.0\.weight"):
        sink.finish()


def test_shape_mismatch_and_unknown_name_are_collected_not_raised_mid_stream(tiny):
    sink = HFSink(perturbed(tiny))
    for name, tensor in gathered_weights(tiny):
        if name == "lm_head.weight":
            tensor = tensor[:-1]  # a smaller vocabulary
        sink.write(name, tensor)  # never raises: the other ranks would wait in the next all-gather
    sink.write("module.lm_head.weight", torch.zeros(1))  # an engine's prefix leaking through
    with pytest.raises(ThymeError) as err:
        sink.finish()
    message = str(err.value)
    assert "lm_head.weight: shape (889, 64) into (890, 64)" in message
    assert "names unknown to the target: module.lm_head.weight" in message
    assert "not written: lm_head.weight" in message


def tie(model):
    model.lm_head.weight = model.model.language_model.embed_tokens.weight
    return model


def test_tied_source_into_tied_target_is_written_once(tiny):
    source, target = tie(perturbed(tiny)), tie(perturbed(tiny))
    names = [n for n, _ in gathered_weights(source)]
    assert "model.language_model.embed_tokens.weight" in names and "lm_head.weight" not in names
    sync_weights(source, HFSink(target))
    assert target.lm_head.weight is target.model.language_model.embed_tokens.weight
    assert torch.equal(target.lm_head.weight, source.lm_head.weight)
    assert torch.equal(logits(target), logits(source))


def test_untied_source_into_tied_target_is_an_error(tiny):
    with pytest.raises(ThymeError, match=r"lm_head\.weight: written twice \(tied to model\.language_model"):
        sync_weights(tiny, HFSink(tie(perturbed(tiny))))


def test_tied_source_into_untied_target_misses_the_head(tiny):
    with pytest.raises(ThymeError, match=r"not written: lm_head\.weight"):
        sync_weights(tie(perturbed(tiny)), HFSink(perturbed(tiny)))


class WithBuffers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)
        self.register_buffer("scale", torch.randn(2))
        self.register_buffer("cache", torch.randn(2), persistent=False)


class DeepSpeedEngine(torch.nn.Module):
    """A fake with the engine's class name and its `.module`."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_persistent_buffers_travel_and_non_persistent_ones_do_not():
    source, target = WithBuffers(), WithBuffers()
    cache_before = target.cache.clone()
    sync_weights(source, HFSink(target))
    assert [n for n, _ in gathered_weights(source)] == ["scale", "proj.weight", "proj.bias"]
    assert torch.equal(target.scale, source.scale) and torch.equal(target.proj.weight, source.proj.weight)
    assert torch.equal(target.cache, cache_before)


def test_engine_wrapper_adds_no_prefix():
    source, target = WithBuffers(), WithBuffers()
    assert [n for n, _ in gathered_weights(DeepSpeedEngine(source))] == ["scale", "proj.weight", "proj.bias"]
    sync_weights(DeepSpeedEngine(source), HFSink(DeepSpeedEngine(target)))
    assert torch.equal(target.proj.bias, source.proj.bias)


class FakeVLLMModel:
    """Stands in for vLLM's Qwen2.5-VL: maps HF names like its hf_to_vllm_mapper, records every call."""

    PREFIXES = {"model.language_model.": "language_model.model.", "model.visual.": "visual.",
                "lm_head.": "language_model.lm_head."}

    def __init__(self, hf_names, fail_on=None):
        self.params = {self.mapped(n): None for n in hf_names}
        self.calls: list[list[tuple[str, torch.Tensor]]] = []
        self.fail_on = fail_on

    def mapped(self, name):
        for old, new in self.PREFIXES.items():
            if name.startswith(old):
                return new + name[len(old):]
        return name

    def load_weights(self, weights):
        weights = list(weights)
        if any(n == self.fail_on for n, _ in weights):
            raise RuntimeError(f"no parameter named {self.fail_on}")
        self.calls.append(weights)
        for name, tensor in weights:
            self.params[self.mapped(name)] = tensor
        return {self.mapped(n) for n, _ in weights}

    def named_parameters(self):
        return list(self.params.items())


class FakeLLM:
    """`LLM` with vLLM's in-process attribute path to the model, and the prefix-cache reset."""

    def __init__(self, model):
        runner = type("Runner", (), {"model": model})()
        worker = type("Wrapper", (), {"worker": type("Worker", (), {"model_runner": runner})()})()
        executor = type("Executor", (), {"driver_worker": worker})()
        self.llm_engine = type("Engine", (), {"model_executor": executor})()
        self.events: list[str] = []
        model_load = model.load_weights
        model.load_weights = lambda w: (self.events.append("load"), model_load(w))[1]

    def reset_prefix_cache(self):
        self.events.append("reset")


def test_vllm_sink_streams_chunks_of_copies_then_resets_the_prefix_cache(tiny):
    names = [n for n, _ in gathered_weights(tiny)]
    model = FakeVLLMModel(names)
    llm = FakeLLM(model)
    stats = sync_weights(tiny, VLLMSink(llm, chunk_bytes=64 << 10))
    assert len(model.calls) > 2 and llm.events == ["load"] * len(model.calls) + ["reset"]
    sent = [n for chunk in model.calls for n, _ in chunk]
    assert sent == names  # every tensor once, in order
    assert all(sum(t.numel() * t.element_size() for _, t in chunk[:-1]) < 64 << 10 for chunk in model.calls)
    source = dict(tiny.named_parameters())
    for name, tensor in (w for chunk in model.calls for w in chunk):
        assert torch.equal(tensor, source[name]) and tensor.data_ptr() != source[name].data_ptr()
    assert stats["tensors"] == len(names)


def test_vllm_sink_reports_unloaded_parameters_and_load_errors_at_finish(tiny):
    names = [n for n, _ in gathered_weights(tiny)]
    model = FakeVLLMModel(names + ["language_model.model.extra.weight"])
    with pytest.raises(ThymeError, match=r"1 parameters unloaded: language_model\.model\.extra\.weight"):
        sync_weights(tiny, VLLMSink(FakeLLM(model)))
    failing = FakeLLM(FakeVLLMModel(names, fail_on="lm_head.weight"))
    with pytest.raises(ThymeError, match="no parameter named lm_head.weight"):
        sync_weights(tiny, VLLMSink(failing, chunk_bytes=0))
    assert failing.events[-1] == "reset"


def test_vllm_sink_needs_the_model_in_this_process():
    class MultiprocessLLM:  # V1 with multiprocessing: the engine core (and the model) is elsewhere
        llm_engine = type("Engine", (), {"engine_core": object()})()

    with pytest.raises(ThymeError, match="no `model_executor`.*VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        VLLMSink(MultiprocessLLM())
