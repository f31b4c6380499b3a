"""One prompt contract: for the same sample, the prompt token ids of its SFT example are the agent loop's
initial prompt ids (RL rollouts and evaluation start from exactly what SFT trained on), with the default
system prompt file and with another one given through the same option.

The SFT side is a catalog-style row whose question is as Thyme's data stores it (its own `<image>` tag,
decorated path/size lines of the original dataset, the format footer); the agent side gets the question
as RL prompts carry it (rl/data: cleaned) and the image through the agent's own image store, as RL does.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from thyme_core.agent.backends.scripted import ScriptedBackend
from thyme_core.agent.codec import HFCodec
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.prompt import DEFAULT_SYSTEM_PROMPT, clean_question, load_system_prompt
from thyme_core.agent.runner import Agent
from thyme_core.base.home import DataHome
from thyme_core.model import ensure_tiny_model, load_processor
from thyme_core.sft.examples import IGNORE, ExampleOptions, TokenSpec, build_example
from thyme_core.thyme_format import FORMAT_FOOTER

MAX_PIXELS = 16 * 28 * 28
RESPONSE = "<think>The sign is red.</think>\n<answer>A</answer>"
STORED_QUESTION = ('<image>\nWhat colour is the sign?\nA. red\nB. blue\n'
                   '**User Image Path:** "/mllm_hdd/data/images/cauldron_textvqa_images_00012345.jpg"\n'
                   '**User Image Size:** "300x240"\n\n' + FORMAT_FOOTER)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = DataHome(tmp_path_factory.mktemp("contract")).ensure()
    processor = load_processor(ensure_tiny_model(home), max_pixels=MAX_PIXELS)
    buf = io.BytesIO()
    Image.new("RGB", (300, 240), (210, 40, 40)).save(buf, "PNG")
    return home, processor, buf.getvalue()


def prompt_ids_both_ways(setup, system_prompt_file: str):
    home, processor, image = setup
    agent = Agent(ScriptedBackend(RESPONSE, HFCodec(processor)), home,
                  AgentConfig(system_prompt=system_prompt_file, isolation="none"))
    sample = agent.sample("s0", image, clean_question(STORED_QUESTION))  # as an RL prompt carries it
    traj = agent.run_sample(sample)
    expanded = traj.ledger.expanded()
    agent_prompt = expanded.ids[:expanded.mask.index(1)]

    row = {"id": "s0", "question": STORED_QUESTION, "response": RESPONSE, "image_paths": [sample.image_ref],
           "has_image": True}
    opts = ExampleOptions(max_length=4096, max_pixels=MAX_PIXELS, system_prompt=load_system_prompt(system_prompt_file))
    ex = build_example(row, home.root, TokenSpec(processor), opts)
    first_label = next(i for i, lab in enumerate(ex.labels) if lab != IGNORE)
    return ex.input_ids[:first_label], agent_prompt, processor


def test_sft_example_and_agent_loop_start_from_the_same_prompt_ids(setup):
    sft, agent, processor = prompt_ids_both_ways(setup, "")
    assert sft == agent
    text = processor.tokenizer.decode(sft)
    assert load_system_prompt() in text and str(DEFAULT_SYSTEM_PROMPT).endswith("infra/prompts/system.txt")
    assert "/mllm_hdd/" not in text and '### User Image Path:** "images/' in text  # the home's path
    assert text.count("<image>") == 0 and "What colour is the sign?" in text and FORMAT_FOOTER in text


def test_the_same_option_sets_another_system_prompt_on_both_sides(setup, tmp_path):
    other = tmp_path / "released.txt"
    other.write_text("You are a helpful assistant.\n\nSolve the problem step by step.\n")
    sft, agent, processor = prompt_ids_both_ways(setup, str(other))
    assert sft == agent
    assert "Solve the problem step by step." in processor.tokenizer.decode(sft)
    default_sft, _, _ = prompt_ids_both_ways(setup, "")
    assert default_sft != sft


def test_the_system_prompt_text_is_in_the_run_keys(tmp_path):
    from thyme_core.agent.config import AgentConfig
    from thyme_core.rl.config import RlConfig
    from thyme_core.sft.config import SftConfig

    a, b, same_as_a = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "copy.txt"
    a.write_text("Prompt A.")
    b.write_text("Prompt B.")
    same_as_a.write_text("Prompt A.\n")  # the same text under another name: the same run
    for make, key in ((SftConfig, "config_hash"), (RlConfig, "config_hash"), (AgentConfig, "fingerprint")):
        keys = {p: getattr(make(system_prompt=str(p)), key)() for p in (a, b, same_as_a)}
        assert keys[a] != keys[b] and keys[a] == keys[same_as_a], make.__name__
        assert getattr(make(), key)() != keys[a]  # the default file is hashed by its text too
    with pytest.raises(FileNotFoundError):
        SftConfig(system_prompt=str(tmp_path / "missing.txt"))
