"""The prompt of one trajectory: Qwen2.5-VL chat format, a system prompt from a file, the image and question.

The user turn is the image followed by the question and the two lines the released model expects:
    User Image Path: "images/ab/<sha256>.jpg"
    User Image Size: "1000x800"
(the path as the data home stores it; the sandbox binds `image_path` to the real file whatever the model
writes). The same markup is also produced as OpenAI-style messages for HTTP backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thyme_core.agent.codec import IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START, Codec
from thyme_core.agent.ledger import TokenLedger

DEFAULT_SYSTEM_PROMPT = Path(__file__).resolve().parents[2] / "infra" / "prompts" / "system.txt"


def load_system_prompt(path: str | Path | None = None) -> str:
    return Path(path or DEFAULT_SYSTEM_PROMPT).read_text().strip()


def user_text(question: str, image_ref: str, width: int, height: int) -> str:
    """
    >>> print(user_text("What color is the car?", "images/ab/x.jpg", 640, 480))
    What color is the car?
    User Image Path: "images/ab/x.jpg"
    User Image Size: "640x480"
    """
    return f'{question.strip()}\nUser Image Path: "{image_ref}"\nUser Image Size: "{width}x{height}"'


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str  # the user text after the image

    def head(self) -> str:
        return f"{IM_START}system\n{self.system}{IM_END}\n{IM_START}user\n"

    def tail(self) -> str:
        return f"{self.user}{IM_END}\n{IM_START}assistant\n"

    def text(self) -> str:
        """The whole prompt as text, one pad for the image (what a chat template renders)."""
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
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.user}]}]
