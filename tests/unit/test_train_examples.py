"""Examples from a real prepared catalog on the tiny model: labels only on model-written tokens, images
where their sandbox output shows them, drops with reasons, and masked positions out of the loss."""

import json

import pytest
import torch

from thyme_core import catalog, prepare
from thyme_core.base.home import DataHome
from thyme_core.model import ensure_tiny_model, load_model, load_processor
from thyme_core.synth import write_dataset
from thyme_core.sft.collate import collate
from thyme_core.sft.examples import IGNORE, Drop, ExampleOptions, TokenSpec, build_example, build_examples
from thyme_core.sft.masking import VISION_BLOCK

MAX_PIXELS = 16 * 28 * 28
OPTS = ExampleOptions(max_length=4096, max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def small_home(tmp_path_factory):
    home = DataHome(tmp_path_factory.mktemp("train_home")).ensure()
    for split, n in (("2round", 3), ("computation", 6)):
        src = home.root / f"{split}.parquet"
        write_dataset(src, split, n, seed=3, width=320, height=240, workers=1)
        for spec in prepare.plan(str(src), split, prepare.PrepareConfig()):
            prepare.prepare_shard(spec, home, prepare.PrepareConfig())
    columns, rows = catalog.query(home, "SELECT id, split, question, response, image_paths, has_image "
                                        "FROM sft_samples ORDER BY id")
    return home, [dict(zip(columns, r)) for r in rows]


@pytest.fixture(scope="module")
def processor(small_home):
    return load_processor(ensure_tiny_model(small_home[0]), max_pixels=MAX_PIXELS)


def _labelled_text(example, tokenizer):
    return tokenizer.decode([t for t, lab in zip(example.input_ids, example.labels) if lab != IGNORE])


def test_labels_are_exactly_the_model_written_text(small_home, processor):
    home, samples = small_home
    tok = processor.tokenizer
    for sample in samples:
        ex = build_example(sample, home.root, TokenSpec(processor), OPTS)
        text = _labelled_text(ex, tok)
        assert "<sandbox_output>" not in text and "</sandbox_output>" not in text
        assert "<|image_pad|>" not in text and "<|vision_start|>" not in text
        assert text.endswith("</answer><|im_end|>")
        assert text.startswith(sample["response"][:20])
        # every image pad and everything before the assistant turn is masked
        pad = processor.image_token_id
        assert all(lab == IGNORE for t, lab in zip(ex.input_ids, ex.labels) if t == pad)
        assert len(ex.images) == len(sample["image_paths"]) and len(ex.input_ids) == len(ex.labels)


def test_processed_images_sit_inside_their_sandbox_output(small_home, processor):
    home, samples = small_home
    sample = next(s for s in samples if len(s["image_paths"]) == 3)
    ex = build_example(sample, home.root, TokenSpec(processor), OPTS)
    text = processor.tokenizer.decode(ex.input_ids)
    blocks = text.split("<|im_start|>assistant\n")[1].split("<sandbox_output>")[1:]  # (the system prompt names the tag)
    assert [b.startswith("<|vision_start|>") for b in blocks] == [True, True]
    assert [str(p) for p in ex.images] == [str(home.root / p) for p in sample["image_paths"]]
    n_pads = sum(1 for t in ex.input_ids if t == processor.image_token_id)
    assert n_pads == sum(t * h * w // 4 for t, h, w in ex.grids)


def test_too_long_is_dropped_with_a_reason_never_truncated(small_home, processor):
    home, samples = small_home
    examples, drops = build_examples(samples, home.root, processor, ExampleOptions(max_length=300,
                                                                                   max_pixels=MAX_PIXELS))
    assert drops and all(d.reason == Drop.TOO_LONG for d in drops)
    assert all(e.n_tokens <= 300 for e in examples)
    assert len(examples) + len(drops) == len(samples)


def test_missing_image_and_count_mismatch_are_dropped(small_home, processor):
    home, samples = small_home
    sample = next(s for s in samples if len(s["image_paths"]) >= 2)
    spec = TokenSpec(processor)
    missing = {**sample, "image_paths": [sample["image_paths"][0], "images/00/nothere.png", *sample["image_paths"][2:]]}
    assert build_example(missing, home.root, spec, OPTS).reason == Drop.IMAGE_MISSING
    short = {**sample, "image_paths": sample["image_paths"][:-1]}
    assert build_example(short, home.root, spec, OPTS).reason == Drop.IMAGE_COUNT_MISMATCH


def test_text_only_samples_have_no_vision_tokens(small_home, processor):
    home, samples = small_home
    text_only = [s for s in samples if not s["has_image"]]
    assert text_only
    for s in text_only:
        ex = build_example(s, home.root, TokenSpec(processor), OPTS)
        assert not ex.images and VISION_BLOCK not in processor.tokenizer.decode(ex.input_ids)


def test_masked_positions_never_reach_the_loss(small_home, processor):
    """The gradient of the loss with respect to the logits is exactly zero wherever the label is masked."""
    home, samples = small_home
    examples, _ = build_examples(samples[:3], home.root, processor, OPTS)
    model = load_model(ensure_tiny_model(home))
    batch = collate(examples, processor, processor.image_token_id, processor.tokenizer.pad_token_id)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    logits.retain_grad()
    labels = batch["labels"]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                             ignore_index=IGNORE)
    assert torch.allclose(loss, model(**batch).loss, atol=1e-5)  # the model's own loss is this one
    loss.backward()
    per_position = logits.grad[:, :-1].abs().sum(-1)
    masked = labels[:, 1:] == IGNORE
    assert per_position[masked].max().item() == 0.0
    assert (per_position[~masked] > 0).all()


def test_collate_marks_image_tokens_for_mrope(small_home, processor):
    home, samples = small_home
    examples, _ = build_examples([s for s in samples if s["has_image"]][:2], home.root, processor, OPTS)
    batch = collate(examples, processor, processor.image_token_id, processor.tokenizer.pad_token_id)
    assert batch["mm_token_type_ids"].sum().item() == (batch["input_ids"] == processor.image_token_id).sum().item()
    assert batch["pixel_values"].shape[0] == batch["image_grid_thw"].prod(-1).sum().item()
    assert json.dumps([list(g) for e in examples for g in e.grids]) == json.dumps(batch["image_grid_thw"].tolist())
