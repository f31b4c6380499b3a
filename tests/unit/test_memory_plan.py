"""The 7B presets fit 80 GB GPUs by the memory plan (thyme_core/model/memory.py), at 8 and 32 GPUs, and the
plan's model-state formulas are DeepSpeed's own estimators when every parameter trains."""

from __future__ import annotations

import pytest

from thyme_core.model import memory


@pytest.fixture(scope="module")
def shape():
    return memory.qwen25vl_7b()


def test_the_meta_model_has_qwen25vl_7b_counts(shape):
    # Qwen2.5-VL-7B-Instruct: ~8.29 B parameters, ~0.68 B in the vision tower, the 545 M-row embedding/LM head
    assert 8.2e9 < shape.total < 8.4e9 and 0.6e9 < shape.vision < 0.7e9
    assert shape.largest_layer == 152064 * 3584


def test_model_states_are_deepspeeds_estimators_when_all_train(shape):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    for gpus in (8, 32):
        z2 = estimate_zero2_model_states_mem_needs(shape.total, gpus, 1, cpu_offload=False)[1]  # (cpu, gpu)
        z3 = estimate_zero3_model_states_mem_needs(shape.total, shape.largest_layer, gpus, 1, cpu_offload=False)[1]
        assert memory.model_states(shape, 2, gpus, shape.total) == pytest.approx(z2, rel=1e-6)
        assert memory.model_states(shape, 3, gpus, shape.total) == pytest.approx(z3, rel=1e-6)


def test_the_presets_fit_80gb_gpus_and_no_checkpointing_would_not():
    rows = memory.preset_plans()
    contrast = [r for r in rows if "without gradient checkpointing" in r["preset"]]
    presets = [r for r in rows if r not in contrast]
    assert {r["gpus"] for r in presets} == {8, 32} and len(presets) == 8
    assert all(r["fits"] for r in presets), [r for r in presets if not r["fits"]]
    assert contrast and not any(r["fits"] for r in contrast)  # the plan can say no
