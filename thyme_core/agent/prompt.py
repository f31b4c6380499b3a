"""The prompt contract: one system prompt file and one user-turn builder for SFT examples, inference,
evaluation and RL rollouts, so RL starts from exactly the prompt SFT trained on.

- System prompt: a text file, `infra/prompts/system.txt` unless the same option names another (SFT and RL
  configs `system_prompt`, `thyme infer/eval/train-sft/train-rl --system-prompt FILE`, the flows'
  `system_prompt`). Its text (not its path) is part of every run key: SftConfig/RlConfig.config_hash and
  AgentConfig.fingerprint hash it. To evaluate a released Thyme checkpoint with the prompt it was trained
  on, point the option at that prompt's file (Thyme's release trained with `swift sft --system
  scripts/prompt.txt` and evaluates with the same text).
- User turn (`user_turn`): what Thyme's SFT data shows and its evaluation code builds: the `<image>` tag
  (where the image goes), the question, the image's path and size, the output-format footer:
      <image>
      What colour is the sign?

      ### User Image Path:** "images/ab/<sha256>.jpg"
      ### User Image Size:** "1000x800"

      ### **Output Format (strict adherence required):**
      ...
  The question is first cleaned (`clean_question`: a stored SFT/RL question's own tag, path and size lines
  and footer removed), so a catalog question and a plain benchmark question give the same turn; the path is
  the data home's (the sandbox binds `image_path` to the real file whatever the model writes). A text-only
  sample (stage-2 computation data) is the question and the footer (`text_turn`).
The chat markup is Qwen2.5-VL's; `Prompt` renders it as text, as a ledger (agent loop) and as OpenAI-style
messages (HTTP backends), and sft/masking.py builds SFT examples from the same `Prompt.head`/`tail`, so the
token ids agree (tests/unit/test_prompt_contract.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from thyme_core.agent.codec import IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START, Codec
from thyme_core.agent.ledger import TokenLedger
from thyme_core.thyme_format import FORMAT_FOOTER, IMAGE_PLACEHOLDER

DEFAULT_SYSTEM_PROMPT = Path(__file__).resolve().parents[2] / "infra" / "prompts" / "system.txt"

_IMAGE_LINE = re.compile(r"^\W*User Image (Path|Size)\b", re.IGNORECASE)
_FOOTER = re.compile(r"^\W*Output Format\b", re.IGNORECASE)


def system_prompt_path(path: str | Path | None = None) -> Path:
    """The system prompt file an option names ('' or None: infra/prompts/system.txt)."""
    return Path(path) if path else DEFAULT_SYSTEM_PROMPT


def resolved_system_prompt(path: str) -> str:
    """A config's option made absolute (the ranks run elsewhere), '' kept; a missing file is an error now."""
    if not path:
        return ""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"system prompt file {path}: not found")
    return str(file)


def load_system_prompt(path: str | Path | None = None) -> str:
    return system_prompt_path(path).read_text().strip()


def system_prompt_sha(path: str | Path | None = None) -> str:
    """What run keys hold of a system prompt option: the hash of the text it names."""
    return hashlib.sha256(load_system_prompt(path).encode()).hexdigest()[:16]


def clean_question(question: str) -> str:
    """The question a user asked, without the image tag, the image path/size lines and the format footer.

    >>> clean_question('<image>\\nWhat is it?\\n**User Image Path:** "a.jpg"\\nUser Image Size: 3x4\\n\\n'
    ...                '### **Output Format (strict adherence required):**\\n<think>...</think>')
    'What is it?'
    """
    kept = []
    for line in question.splitlines():
        if _FOOTER.match(line):
            break  # the footer and its template lines run to the end
        if _IMAGE_LINE.match(line):
            continue
        line = line.replace(IMAGE_PLACEHOLDER, "")
        if line.strip() or kept:
            kept.append(line)
    return "\n".join(kept).strip()


def user_turn(question: str, image_ref: str, width: int, height: int) -> str:
    """
    >>> print(user_turn("What color is the car?", "images/ab/x.jpg", 640, 480).split("### **Output")[0])
    <image>
    What color is the car?
    <BLANKLINE>
    ### User Image Path:** "images/ab/x.jpg"
    ### User Image Size:** "640x480"
    <BLANKLINE>
    <BLANKLINE>
    """
    return (f'{IMAGE_PLACEHOLDER}\n{clean_question(question)}\n\n### User Image Path:** "{image_ref}"\n'
            f'### User Image Size:** "{width}x{height}"\n\n{FORMAT_FOOTER}')


def text_turn(question: str) -> str:
    """The user turn of a sample without an image."""
    return f"{clean_question(question)}\n\n{FORMAT_FOOTER}"


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str  # the user turn; its first `<image>` tag is where the image goes (none: a text-only turn)

    def _parts(self) -> tuple[str, str | None]:
        before, tag, after = self.user.partition(IMAGE_PLACEHOLDER)
        return (before, after) if tag else (self.user, None)

    @property
    def has_image(self) -> bool:
        return self._parts()[1] is not None

    def head(self) -> str:
        """Everything before the image (with no image: before the assistant's text)."""
        before, after = self._parts()
        text = f"{IM_START}system\n{self.system}{IM_END}\n{IM_START}user\n{before}"
        return text if after is not None else text + f"{IM_END}\n{IM_START}assistant\n"

    def tail(self) -> str:
        """Everything after the image, up to the assistant's first token ('' with no image)."""
        after = self._parts()[1]
        return "" if after is None else f"{after}{IM_END}\n{IM_START}assistant\n"

    def text(self) -> str:
        """The whole prompt as text, one pad for the image (what a chat template renders)."""
        if not self.has_image:
            return self.head()
        return f"{self.head()}{VISION_START}{IMAGE_PAD}{VISION_END}{self.tail()}"

    def start_ledger(self, codec: Codec, width: int, height: int, sha256: str = "") -> TokenLedger:
        """A ledger holding the prompt (mask 0) with the input image fitted to (width, height)."""
        ledger = TokenLedger(codec.image_pad_id)
        ledger.add_image(codec.encode(self.head()) + [codec.token_id(VISION_START)], [codec.token_id(VISION_END)],
                         width, height, "prompt", sha256)
        ledger.add_text(codec.encode(self.tail()), generated=False)
        return ledger

    def messages(self) -> list[dict]:
        """OpenAI-style messages (the image as a placeholder part the backend fills)."""
        before, after = self._parts()
        content = ([{"type": "text", "text": before}] if before else []) + [{"type": "image"}]
        content += [{"type": "text", "text": after}] if after else []
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]
