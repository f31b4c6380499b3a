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


def test_homes_built_at_once_in_one_process_hold_the_same_weights(tmp_path):
    """Two node runs of one process (threads) each build their home's tiny model: the weights must be the
    seed's, not an interleaving of both builders' draws from torch's global generator (two nodes of one RL
    run then trained two different models, and the run's steps depended on the threads' timing)."""
    import hashlib
    import threading

    import torch

    start = threading.Barrier(3)
    digests: dict[int, str] = {}

    def build(i):
        home = DataHome(tmp_path / f"node{i}").ensure()
        start.wait()
        folder = resolve_model_path("tiny", home)
        digests[i] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()

    threads = [threading.Thread(target=build, args=(i,)) for i in range(3)]
    state = torch.random.get_rng_state()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(digests) == 3 and len(set(digests.values())) == 1
    alone = resolve_model_path("tiny", DataHome(tmp_path / "alone").ensure())
    assert hashlib.sha256((alone / "model.safetensors").read_bytes()).hexdigest() == digests[0]
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left as it was


def test_ranks_name_the_first_fact_they_disagree_on():
    from thyme_core.base.ranks import Ranks, first_disagreement
    from thyme_core.model import weights_fingerprint

    same = {"run key": "k", "start weights": "a"}
    assert first_disagreement([same, dict(same), dict(same)]) == ""
    line = first_disagreement([same, dict(same), {"run key": "k", "start weights": "b"}])
    assert line.startswith("rank 2 disagrees with rank 0 on the start weights: 'b' vs 'a'")
    assert "run key" in first_disagreement([same, {"start weights": "a"}])
    Ranks().agree(same)  # one process agrees with itself

    import torch

    model = torch.nn.Linear(300, 300)
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.weight[0, 0] += 1.0  # the first element is among the sampled ones
    assert weights_fingerprint(model) != before
