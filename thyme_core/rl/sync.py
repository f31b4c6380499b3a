"""Weight sync from the RL trainer to a rollout engine, after each optimizer step.

The trainer is a DeepSpeed engine (ZeRO-2 or ZeRO-3) over the HF policy; rollouts come from a separate,
unpartitioned copy (transformers backend) or from vLLM in the same process. `gathered_weights` walks the
trainer's modules and yields (state_dict name, full tensor) for every parameter and persistent buffer; a sink
writes them into the rollout model. `sync_weights` ties the two and times it.

- ZeRO-3: the direct parameters of one module at a time are all-gathered (`GatheredParameters`,
  read-only), yielded, and released before the next module, so at most one block (the largest: the
  embedding or lm_head) is ever whole. This is a collective: EVERY rank must run the whole iteration, in the
  same order, even ranks that have no rollout engine (give them `NullSink`). Sinks therefore never raise in
  the middle: a rank that stopped early would leave the others waiting in the next all-gather. They collect
  problems and raise in `finish()`, after the last gather.
- ZeRO-2 or no ZeRO: parameters are whole on every rank and are yielded as they are, in the engine's compute
  dtype (bf16 under bf16 training; the fp32 masters stay in the optimizer).
- A yielded tensor is only valid until the next one is asked for (under ZeRO-3 its storage is released):
  copy it, never keep it.
- Shared (tied) parameters are yielded once, under their first name in `named_modules()` order.

Not covered: tensor/pipeline parallel trainers (AutoTP shards), LoRA adapters, quantized vLLM weights
(load_weights + process_weights_after_loading would be needed), vLLM in multiprocess mode (its model lives in
another process; `VLLMSink` says so).
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator, Protocol

import torch

from thyme_core.base.errors import ThymeError
from thyme_core.model.forward import unwrap

VLLM_MODEL_PATH = "llm_engine.model_executor.driver_worker.worker.model_runner.model"


def _is_partitioned(p: torch.Tensor) -> bool:
    return hasattr(p, "ds_id")  # set on every ZeRO-3 parameter, gathered or not


def _persistent_buffers(sub: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    for name, buf in sub.named_buffers(recurse=False):
        if buf is not None and name not in sub._non_persistent_buffers_set:
            yield name, buf


def gathered_weights(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(state_dict name, full tensor) for every parameter and persistent buffer of `module` (an engine or
    the HF model), module by module. Collective under ZeRO-3: every rank must exhaust it."""
    module = unwrap(module)
    seen: set[int] = set()
    for prefix, sub in module.named_modules():
        dot = f"{prefix}." if prefix else ""
        params = [(n, p) for n, p in sub.named_parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for _, p in params)
        if any(_is_partitioned(p) for _, p in params):
            import deepspeed

            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                for name, p in params:
                    yield dot + name, p.data
        else:
            for name, p in params:
                yield dot + name, p.data
        for name, buf in _persistent_buffers(sub):
            if id(buf) not in seen:
                seen.add(id(buf))
                yield dot + name, buf


class Sink(Protocol):
    def write(self, name: str, tensor: torch.Tensor) -> None: ...

    def finish(self) -> None: ...


class NullSink:
    """For ranks without a rollout engine: they still take part in the gathers."""

    def write(self, name: str, tensor: torch.Tensor) -> None:
        pass

    def finish(self) -> None:
        pass


def _names(names: Iterable[str], limit: int = 8, sort: bool = True) -> str:
    names = sorted(names) if sort else list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class HFSink:
    """Copies each tensor in place into a torch model's parameter or persistent buffer (cast to its dtype
    and device). `finish` raises unless every target tensor was written exactly once and every name was
    known: a tied parameter counts once whichever of its names arrives, and two writes to it (an untied
    source into a tied target) are an error."""

    def __init__(self, model: torch.nn.Module):
        model = unwrap(model)
        self.targets: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
        for prefix, sub in model.named_modules(remove_duplicate=False):
            for name, buf in _persistent_buffers(sub):
                self.targets[f"{prefix}.{name}" if prefix else name] = buf
        self.first_name: dict[int, str] = {}
        for name, t in self.targets.items():
            self.first_name.setdefault(id(t), name)
        self.written: dict[int, str] = {}
        self.problems: list[str] = []
        self.unknown: list[str] = []

    def write(self, name: str, tensor: torch.Tensor) -> None:
        target = self.targets.get(name)
        if target is None:
            self.unknown.append(name)
            return
        if tuple(target.shape) != tuple(tensor.shape):
            self.problems.append(f"{name}: shape {tuple(tensor.shape)} into {tuple(target.shape)}")
            return
        if id(target) in self.written:
            self.problems.append(f"{name}: written twice (tied to {self.written[id(target)]})")
            return
        with torch.no_grad():
            target.copy_(tensor)
        self.written[id(target)] = name

    def finish(self) -> None:
        missing = [n for i, n in self.first_name.items() if i not in self.written]
        errors = [_names(self.problems, sort=False)] if self.problems else []
        if missing:
            errors.append(f"{len(missing)} target tensors not written: {_names(missing)}")
        if self.unknown:
            errors.append(f"{len(self.unknown)} names unknown to the target: {_names(self.unknown)}")
        if errors:
            raise ThymeError("weight sync into the rollout model failed: " + "; ".join(errors))


def vllm_model(llm) -> torch.nn.Module:
    """The nn.Module inside an in-process vLLM `LLM` (V1 with VLLM_ENABLE_V1_MULTIPROCESSING=0, or V0)."""
    obj = llm
    for attr in VLLM_MODEL_PATH.split("."):
        if not hasattr(obj, attr):
            raise ThymeError(
                f"cannot reach vLLM's model at llm.{VLLM_MODEL_PATH} (no `{attr}`): weight sync needs vLLM in "
                "this process; set VLLM_ENABLE_V1_MULTIPROCESSING=0 before creating the LLM and use "
                "tensor_parallel_size=1")
        obj = getattr(obj, attr)
    if not hasattr(obj, "load_weights"):
        raise ThymeError(f"vLLM's model {type(obj).__name__} has no load_weights")
    return obj


class VLLMSink:
    """Streams tensors into vLLM's `model.load_weights` in chunks of about `chunk_bytes` (HF names: vLLM's
    Qwen2.5-VL maps them through its hf_to_vllm_mapper and fuses q/k/v and gate/up itself). A buffered
    tensor is cloned (the yielded one may be released under ZeRO-3), so peak extra memory is one chunk.
    `finish` flushes, resets the prefix cache (KV computed by the old weights must not be reused) and, when
    load_weights reports what it loaded, raises if any of vLLM's parameters was not loaded."""

    def __init__(self, llm, chunk_bytes: int = 256 << 20):
        self.llm = llm
        self.model = vllm_model(llm)
        self.chunk_bytes = chunk_bytes
        self.pending: list[tuple[str, torch.Tensor]] = []
        self.pending_bytes = 0
        self.loaded: set[str] | None = set()
        self.errors: list[str] = []

    def write(self, name: str, tensor: torch.Tensor) -> None:
        self.pending.append((name, tensor.detach().clone()))
        self.pending_bytes += tensor.numel() * tensor.element_size()
        if self.pending_bytes >= self.chunk_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        chunk, self.pending, self.pending_bytes = self.pending, [], 0
        try:
            got = self.model.load_weights(chunk)
        except Exception as e:  # raised in finish(): the caller may still be inside a collective loop
            self.errors.append(f"load_weights({chunk[0][0]}..): {type(e).__name__}: {e}")
            return
        if got is None or self.loaded is None:
            self.loaded = None
        else:
            self.loaded.update(got)

    def finish(self) -> None:
        self._flush()
        self.llm.reset_prefix_cache()
        if self.errors:
            raise ThymeError("weight sync into vLLM failed: " + "; ".join(self.errors))
        if self.loaded is not None:
            missing = {n for n, _ in self.model.named_parameters()} - self.loaded
            if missing:
                raise ThymeError(f"weight sync into vLLM left {len(missing)} parameters unloaded: "
                                 f"{_names(missing)}")


def sync_weights(source_module: torch.nn.Module, sink: Sink) -> dict:
    """Stream the trainer's weights into `sink`; returns {"tensors", "bytes", "seconds"}. Collective under
    ZeRO-3 (see the module docstring)."""
    started = time.perf_counter()
    tensors = nbytes = 0
    for name, tensor in gathered_weights(source_module):
        sink.write(name, tensor)
        tensors += 1
        nbytes += tensor.numel() * tensor.element_size()
    sink.finish()
    return {"tensors": tensors, "bytes": nbytes, "seconds": time.perf_counter() - started}
