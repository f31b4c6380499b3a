"""Batch plans: deterministic, length-grouped, and in stage 2 never mixing image and text-only samples."""

import random

import pytest

from thyme_core.sft.batching import micro_batches, padding_ratio, plan_batches


def _data(n=200, seed=0):
    rng = random.Random(seed)
    return [rng.randint(50, 2000) for _ in range(n)], [rng.random() < 0.4 for _ in range(n)]


def test_same_inputs_same_plan():
    lengths, images = _data()
    a = plan_batches(lengths, images, 16, seed=1, epochs=2, separate_kinds=True)
    b = plan_batches(lengths, images, 16, seed=1, epochs=2, separate_kinds=True)
    assert a == b  # a resumed run rebuilds exactly this plan
    assert a != plan_batches(lengths, images, 16, seed=2, epochs=2, separate_kinds=True)


@pytest.mark.parametrize("ratio", [None, 0.0, 0.3, 1.0])
def test_stage2_batches_never_mix(ratio):
    lengths, images = _data()
    plan = plan_batches(lengths, images, 8, seed=0, epochs=1, separate_kinds=True, image_ratio=ratio)
    for step, kind in zip(plan.steps, plan.kinds):
        assert {images[i] for i in step} == {kind == "image"}
        for rank in range(2):
            for mb in micro_batches(step, lengths, 2, rank, 2):
                assert {images[i] for i in mb} == {kind == "image"}
    # every example is used once per epoch except the incomplete tail of each pool
    used = [i for s in plan.steps for i in s]
    assert len(used) == len(set(used)) == len(lengths) - plan.left_out


def test_image_ratio_sets_the_share_of_image_steps_while_both_pools_last():
    lengths, images = [100] * 800, [i % 2 == 0 for i in range(800)]
    plan = plan_batches(lengths, images, 4, seed=0, epochs=1, separate_kinds=True, image_ratio=0.25)
    head = plan.kinds[:100]  # both pools (100 batches each) still have batches here
    assert 15 <= head.count("image") <= 35


def test_length_grouping_cuts_padding():
    lengths, images = _data(512)
    grouped = plan_batches(lengths, images, 32, seed=0, epochs=1, separate_kinds=False, group_batches=8)
    ungrouped = plan_batches(lengths, images, 32, seed=0, epochs=1, separate_kinds=False, group_batches=1)

    def pad(plan):
        return padding_ratio([[lengths[i] for i in mb] for s in plan.steps for mb in micro_batches(s, lengths, 1, 0, 4)])

    # micro-batches hold neighbours by length in both; groups of 8 batches make the neighbours closer
    assert pad(grouped) < pad(ungrouped) < 0.5
    assert pad(grouped) < 0.05


def test_micro_batches_split_a_step_over_ranks():
    lengths = [5, 9, 1, 7, 3, 8, 2, 6]
    step = list(range(8))
    parts = [micro_batches(step, lengths, 2, r, 2) for r in range(2)]
    assert sorted(i for p in parts for mb in p for i in mb) == step
    assert all(len(p) == 2 for p in parts)  # accumulation steps per rank
    assert parts[0][0] == [1, 5]  # the two longest sequences share a micro-batch


def test_padding_ratio():
    assert padding_ratio([[10, 10]]) == 0.0
    assert padding_ratio([[10, 5]]) == 0.25
    assert padding_ratio([]) == 0.0
