"""Config, presets and DeepSpeed files: what the launcher relies on, checked without launching."""

import json

import pytest

from thyme_core.base.errors import ThymeError
from thyme_core.sft.config import DEEPSPEED_DIR, PRESETS_DIR, SftConfig, help_text, load_preset
from thyme_core.sft.loop import deepspeed_config, lr_lambda, make_optimizer


@pytest.mark.parametrize("path", sorted(PRESETS_DIR.glob("sft_*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads_and_its_header_names_its_command(path):
    assert path.read_text().startswith("# Command: thyme train-sft --stage")
    cfg = load_preset(str(path))
    assert f"--stage {cfg.stage}" in path.read_text().splitlines()[0]
    assert cfg.deepspeed_path().is_file()


def test_reference_presets_are_thymes_hyper_parameters():
    one, two = load_preset("sft_stage1"), load_preset("sft_stage2")
    assert (one.learning_rate, one.epochs, one.global_batch, one.max_length, one.max_pixels) == (
        1e-5, 3, 128, 10240, 3211264)
    assert one.freeze_vision and one.deepspeed == "zero2" and one.image_only
    assert two.learning_rate == 1e-6 and two.separate_kinds and not two.image_only
    assert one.accumulation == 16  # 8 GPUs x micro 1 x 16 = 128


def test_validation_and_unknown_keys():
    with pytest.raises(ThymeError, match="multiple"):
        SftConfig(global_batch=10, micro_batch=4)
    with pytest.raises(ThymeError, match="stage"):
        SftConfig(stage=3)
    with pytest.raises(ThymeError, match="unknown keys"):
        load_preset("sft_stage1", learning_rte=1.0)
    with pytest.raises(ThymeError, match="adam_beta2"):
        SftConfig(adam_beta2=1.0)


def test_numbers_yaml_reads_as_strings_are_numbers_or_a_clear_error():
    # `--set learning_rate=6e-4` (no dot): YAML gives the string "6e-4", which reached the optimizer as a str
    assert load_preset("sft_stage1", learning_rate="6e-4").learning_rate == 6e-4
    assert load_preset("sft_stage1", save_steps="7").save_steps == 7
    with pytest.raises(ThymeError, match="learning_rate takes a number, not 'fast'"):
        load_preset("sft_stage1", learning_rate="fast")


def test_adam_beta2_reaches_the_optimizer():
    import torch

    params = [torch.nn.Parameter(torch.zeros(2))]
    assert make_optimizer(params, SftConfig()).param_groups[0]["betas"] == (0.9, 0.999)  # torch's default
    learn = load_preset("sft_learn")
    assert make_optimizer(params, learn).param_groups[0]["betas"] == (0.9, 0.95) == (0.9, learn.adam_beta2)


def test_config_hash_ignores_where_and_how_often():
    cfg = load_preset("sft_tiny_stage1")
    assert cfg.config_hash() == cfg.replace(output_dir="/elsewhere", save_steps=7, log_steps=3).config_hash()
    assert cfg.config_hash() != cfg.replace(learning_rate=2e-3).config_hash()
    assert SftConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("name, stage", [("zero2", 2), ("zero3", 3)])
def test_deepspeed_configs_get_the_batch_sizes_filled(name, stage):
    cfg = SftConfig(deepspeed=name, global_batch=8, micro_batch=2, nproc=2)
    ds = deepspeed_config(cfg, use_bf16=False)
    assert ds["zero_optimization"]["stage"] == stage
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (8, 2, 2)
    assert "auto" not in json.dumps(ds)
    assert (DEEPSPEED_DIR / f"{name}.json").is_file()


def test_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(100, 0.05)
    assert [round(f(s), 3) for s in (0, 4)] == [0.2, 1.0]
    assert f(50) < 1.0 and f(99) < 0.01


def test_help_text_lists_every_field():
    text = help_text()
    assert "last_round_only" in text and "multi-round" in text
