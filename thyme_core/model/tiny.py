"""A tiny Qwen2.5-VL-architecture model, tokenizer and processor, built offline in seconds.

Tests, the demo and `thyme train-sft` on a fresh CPU machine need a model with the real architecture
(vision tower, merger, M-RoPE, the same special tokens and chat format) but no download. This builds one:
a byte-level BPE tokenizer trained on a fixed Thyme-shaped text with Qwen's special tokens, a Qwen-style chat
template, and a randomly initialised Qwen2_5_VLForConditionalGeneration (hidden 64, 2 layers, vision depth
2; ~0.2M parameters). It is cached in the data home under models/, keyed by TINY_VERSION, and built
atomically (staging folder + rename), so concurrent builders converge.

Named variants (VARIANTS; `--model tiny:NAME` wherever a model is taken, loader.resolve_model_path):
- "tiny": the model above, what tests and the demo use;
- "learn": the same architecture scaled up as far as a few CPU minutes of training allow (bench/learn_cpu.py:
  hidden 128, 4 layers, ~1.6M parameters), images at most 112x112 (16 tokens), and a 2048-token vocabulary
  that also learned the default system prompt and the zoom task's wording (synth/zoom.py), as a real
  tokenizer's vocabulary covers ordinary English and Python: sequences stay a few hundred tokens long.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome

TINY_VERSION = "tiny-qwen2_5-vl-v2"
MARKER = "thyme_tiny.json"  # written last: a folder without it is an unfinished build
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
VOCAB_SIZE = 1024
# Small images keep CPU sequences short: 64*28*28 pixels is at most 64 image tokens after the 2x2 merge.
TINY_MIN_PIXELS = 4 * 28 * 28
TINY_MAX_PIXELS = 64 * 28 * 28

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Variant:
    shape: str  # a key of SHAPES
    vocab_size: int
    min_pixels: int
    max_pixels: int
    learn_corpus: bool  # the tokenizer also learns _LEARN_CORPUS and the default system prompt
    folder: str  # its folder under <home>/models; a new name whenever what is built changes


VARIANTS = {
    "tiny": Variant("tiny", VOCAB_SIZE, TINY_MIN_PIXELS, TINY_MAX_PIXELS, False, TINY_VERSION),
    # v3: the tokenizer learned the zoom program's 16x16 crop and 56x56 zoom (synth/zoom.py CODE)
    "learn": Variant("learn", 2048, 4 * 28 * 28, 16 * 28 * 28, True, "tiny-qwen2_5-vl-learn-v3"),
}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ThymeError(f"unknown tiny model {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def tiny_model_dir(home: DataHome, name: str = "tiny") -> Path:
    return home.root / "models" / variant(name).folder


# One build at a time in a process: the random init draws from torch's global generator, so two threads
# building at once (two node runs of one test, two stages of one Prefect process) interleave their draws
# and each gets different weights: two nodes of one run then train two different models.
_BUILD_LOCK = threading.RLock()  # re-entered: ensure_tiny_model holds it around build_tiny_model


def ensure_tiny_model(home: DataHome, seed: int = 0, name: str = "tiny") -> Path:
    """The folder of tiny model `name` (VARIANTS) in `home`, building it first if it is not there yet."""
    target = tiny_model_dir(home, name)
    if (target / MARKER).exists():
        return target
    staging = home.ensure().tmp_dir / f"{target.name}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(staging, ignore_errors=True)
    with _BUILD_LOCK:
        if (target / MARKER).exists():  # another thread built it while this one waited
            return target
        build_tiny_model(staging, seed=seed, name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(target)
    except OSError:  # another process finished first; its build is equivalent
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / MARKER).exists():
            raise
    return target


def build_tiny_model(out: Path, seed: int = 0, name: str = "tiny") -> Path:
    """Write tokenizer, image processor config, chat template and a random model of variant `name` into `out`."""
    import json

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    spec = variant(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size, spec.learn_corpus)
    tokenizer.save_pretrained(out)
    image_processor = build_image_processor(spec.min_pixels, spec.max_pixels)
    image_processor.save_pretrained(out)
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same weights for a seed, whatever the caller's generator state was
        model = Qwen2_5_VLForConditionalGeneration(tiny_config(tokenizer, spec.shape))
    model.save_pretrained(out)
    (out / MARKER).write_text(json.dumps({"version": spec.folder, "variant": name, "seed": seed}))
    return out


# The tokenizer learns from this fixed text in Thyme's shape (prompt lines, reasoning, cv2/PIL code, sandbox
# tags, answers), not from the synthetic generator: the build must not depend on code that runs user-style
# programs and reads their stdout (inside a Prefect task with log_prints, print does not reach stdout).
_CORPUS = """<image>
Question: What is the number on the small sign? Answer with a single word or number.
### User Image Path:** "images/ab/0123456789abcdef.jpg"
### User Image Size:** "640x480"
### **Output Format (strict adherence required):**
<think>Your detailed reasoning process, including any code, should go here.</think>
<answer>Your final answer to the user's question goes here.</answer>
<think>The sign is small and faint. Let me crop that area, zoom in and enhance the contrast.
<code>
```python
import cv2
import numpy as np
import os
from PIL import Image, ImageEnhance, ImageOps, ImageFilter

image_path = "images/ab/0123456789abcdef.jpg"
image = cv2.imread(image_path)
x1, y1, x2, y2 = 545, 105, 609, 169
cropped_image = image[y1:y2, x1:x2]
(h, w) = cropped_image.shape[:2]
center = (w / 2, h / 2)
M = cv2.getRotationMatrix2D(center, 30, 1.0)
rotated = cv2.warpAffine(cropped_image, M, (w, h), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))
resized_image = cv2.resize(rotated, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
processed_path = os.path.join("/mnt/data/temp_processed_images/", "rotate_77ec58eb.png")
cv2.imwrite(processed_path, resized_image)
print(processed_path)
img = Image.open(image_path)
crop = img.crop((x1, y1, x2, y2))
zoomed = crop.resize((crop.width * 2, crop.height * 2), Image.Resampling.LANCZOS)
enhanced = ImageEnhance.Contrast(zoomed).enhance(2.0)
gray = ImageOps.grayscale(enhanced)
sharp = gray.filter(ImageFilter.SHARPEN)
save_path = "/mnt/data/temp_processed_images/processed_zoom_enhance.jpg"
sharp.save(save_path)
print(save_path)
```
</code>
<sandbox_output>images/cd/fedcba9876543210.png</sandbox_output>
The region is larger now, but the characters are still hard to make out. I will process this output further.
Upon examining the processed image, the label reads 737.</think>
<answer>737</answer>
Question: A shop sells tickets at $9.50 each. With a sales tax of 6%, how much do 28 tickets cost in total?
Round to two decimal places. What is the total price of the items on the list?
<think>I will compute the total including tax.
<code>
```python
price = 9.5
quantity = 28
tax_rate = 6 / 100
total = price * quantity * (1 + tax_rate)
print(round(total, 2))
import math
values = [12.5, 3.75, 40.0, 8.25]
print(sum(values), math.sqrt(144), max(values) - min(values))
```
</code>
<sandbox_output>281.96</sandbox_output>
The computed result is 281.96 dollars.</think>
<answer>281.96</answer>
The answer is B. The image shows a red, green and blue label; the price list is on the right side.
0 1 2 3 4 5 6 7 8 9 10 20 30 40 50 60 70 80 90 100 128 256 512 1000 0.5 1.25 -3 +4 = == != >= <= ( ) [ ] { } , . : ; ' "
"""


# What the "learn" variant's tokenizer also sees: the zoom task's words and code (synth/zoom.py CODE), written
# out here rather than imported: importing synth would put synth, the sandbox runner and the eval writer into the
# import closure of every SFT and RL run key (base/versioning.py), so editing a data generator would rerun training.
_LEARN_CORPUS = """Question: What colour is the small square?
Options:
A. red
B. green
C. blue
D. yellow
Please select the correct answer from the options above.
<think>The square is too small to see. I will find it and zoom in.
<code>
```python
import numpy as np
from PIL import Image
img = Image.open(image_path)
s = np.asarray(img.convert("HSV"))[:, :, 1]
y, x = np.argwhere(s > 100).mean(0).astype(int)
path = "/mnt/data/temp_processed_images/zoom.png"
img.crop((x - 8, y - 8, x + 8, y + 8)).resize((56, 56)).save(path)
print(path)
```
</code>
<sandbox_output>images/ab/0123456789abcdef.png</sandbox_output>
The square is red. The square is green. The square is blue. The square is yellow.</think>
<answer>A</answer> <answer>B</answer> <answer>C</answer> <answer>D</answer>
"""


def _corpus(learn: bool = False) -> list[str]:
    extra = []
    if learn:
        system = (Path(__file__).resolve().parents[2] / "infra" / "prompts" / "system.txt").read_text()
        extra = [_LEARN_CORPUS, system] * 8
    return _CORPUS.split("\n\n") * 4 + extra


def build_tokenizer(vocab_size: int = VOCAB_SIZE, learn_corpus: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(learn_corpus), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=32768)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_image_processor(min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)


# Shapes a random model can take over the tiny tokenizer: the tiny default, and Qwen2.5-VL-7B's text and vision
# shapes (benchmarks on a GPU: bench/gpu_rl.py; its vocabulary padded to the real 152064 rows, never sampled).
SHAPES = {
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2), mrope_section=[2, 3, 3], vocab_size=None,
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1])),
    "learn": dict(text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                            num_key_value_heads=2), mrope_section=[4, 6, 6], vocab_size=None,
                  vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, fullatt_block_indexes=[1])),
    "7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4), mrope_section=[16, 24, 24], vocab_size=152064,
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           fullatt_block_indexes=[7, 15, 23, 31])),
}


def tiny_config(tokenizer, size: str = "tiny"):
    """The model config over the tiny tokenizer's special tokens; `size` picks a shape of SHAPES."""
    from transformers import Qwen2_5_VLConfig

    shape = SHAPES[size]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(shape["text"], vocab_size=shape["vocab_size"] or len(tokenizer), max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                                 "mrope_section": shape["mrope_section"]},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    vision = dict(shape["vision"], out_hidden_size=shape["text"]["hidden_size"], window_size=112)
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
    )
