"""Named tiny models (model/tiny.py VARIANTS) and the learning bench's presets that use the "learn" one."""

from __future__ import annotations

import json

import pytest

from thyme_core.agent.prompt import load_system_prompt
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.base.presets import PRESETS_DIR
from thyme_core.model import load_processor, resolve_model_path, tiny_model_dir
from thyme_core.rl.config import load_preset as rl_preset
from thyme_core.sft.config import load_preset as sft_preset


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    home = DataHome(tmp_path_factory.mktemp("variants")).ensure()
    return home, resolve_model_path("tiny:learn", home)


def test_tiny_learn_is_a_bigger_model_with_its_own_folder_and_a_vocabulary_for_the_prompt(learn):
    home, folder = learn
    assert folder == tiny_model_dir(home, "learn") != tiny_model_dir(home)
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    assert (text["hidden_size"], text["num_hidden_layers"]) == (128, 4)
    processor = load_processor(folder)
    assert processor.image_processor.size["longest_edge"] == 16 * 28 * 28
    tiny = load_processor(resolve_model_path(None, home))
    system = load_system_prompt()
    assert len(processor.tokenizer(system)["input_ids"]) < 0.6 * len(tiny.tokenizer(system)["input_ids"])
    assert resolve_model_path("tiny:learn", home) == folder  # built once


def test_unknown_variant_names_the_known_ones(tmp_path):
    with pytest.raises(ThymeError, match="known: tiny, learn"):
        resolve_model_path("tiny:huge", DataHome(tmp_path))


def test_learn_presets_share_the_prompt_and_the_image_size_with_the_learn_model(learn):
    _, folder = learn
    sft, rl = sft_preset("sft_learn"), rl_preset("rl_learn")
    assert load_system_prompt(sft.system_prompt or None) == load_system_prompt()  # the agent loop's (eval, RL)
    size = load_processor(folder).image_processor.size
    assert (sft.min_pixels, sft.max_pixels) == (rl.min_pixels, rl.max_pixels) == (size["shortest_edge"],
                                                                                    size["longest_edge"])
    assert sft.splits == ("zoom",) and not sft.freeze_vision and rl.nproc == 1 and rl.deepspeed == "zero3"
    for name in ("sft_learn", "rl_learn"):
        assert (PRESETS_DIR / f"{name}.yaml").read_text().startswith("# Command: thyme train-")
