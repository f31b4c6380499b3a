"""SFT configuration: one dataclass whose fields carry their help text, validated on construction.

Presets live in infra/presets/*.yaml (Thyme's reference hyper-parameters; each header names the command that
runs it). `config_hash` covers every field that changes what is trained, so (dataset, config hash, code
version) identifies a run and a rerun with nothing changed is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core.agent.prompt import resolved_system_prompt
from thyme_core.base import presets
from thyme_core.base.errors import ThymeError
from thyme_core.base.presets import setting as _f
from thyme_core.runs.config import DEEPSPEED_DIR, REPO, RunConfig, deepspeed_config_path  # noqa: F401

PRESETS_DIR = presets.PRESETS_DIR


@dataclass(frozen=True)
class SftConfig(RunConfig):
    # Fields that say where or how often, not what: they stay out of the config hash.
    NOT_HASHED = frozenset({"output_dir", "save_steps", "keep_checkpoints", "log_steps", "nproc", "nnodes",
                            "init_from", "dataset", "loss_chunk"})

    stage: int = _f(1, "1: SFT on image data; 2: annealing on computation data from stage 1's weights")
    model: str | None = _f(None, "model folder to start from; None = the tiny offline model (stage 1)")
    init_from: str | None = _f(None, "stage 2: folder of stage 1's final weights (found in the home if None)")
    output_dir: str = _f("", "run folder (set by the launcher: <home>/runs/sft/stage<N>/<key>)")
    splits: tuple[str, ...] = _f(("wo_thinking_thyme_single_round", "2round"), "catalog splits to train on")
    image_only: bool = _f(True, "train only on samples with an image (stage 1)")
    separate_kinds: bool = _f(False, "never put image and text-only samples in one batch (stage 2)")
    image_ratio: float | None = _f(None, "stage 2: share of image steps (None: proportional to pool sizes)")
    last_round_only: bool = _f(False, "multi-round responses: loss only on the last code round and after")
    system_prompt: str = _f("", "system prompt file ('' = infra/prompts/system.txt); its text is in the run key")
    max_length: int = _f(10240, "longest example in tokens; longer ones are dropped (reason too_long)")
    min_pixels: int = _f(3136, "image processor min pixels (Qwen2.5-VL default 56*56)")
    max_pixels: int = _f(3_211_264, "image processor max pixels (Thyme SFT: 3211264)")
    learning_rate: float = _f(1e-5, "peak learning rate (Thyme: 1e-5 stage 1, 1e-6 stage 2)")
    epochs: int = _f(3, "passes over the data")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: all epochs)")
    warmup_ratio: float = _f(0.05, "linear warm-up share of the steps, then cosine decay to 0")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    adam_beta2: float = _f(0.999, "AdamW beta2 (0.999: the torch/HF default; 0.95 forgets the large early gradients "
                                  "within ~20 steps, so a rare token's small late gradient still moves the weights)")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    global_batch: int = _f(128, "examples per optimizer step over all ranks (= micro * accumulation * ranks)")
    micro_batch: int = _f(1, "examples per forward pass on one rank")
    group_batches: int = _f(8, "length grouping: batches cut from length-sorted groups of this many")
    seed: int = _f(42, "seed of the batch plan and of weight init where any")
    freeze_vision: bool = _f(True, "freeze the vision tower and merger (Thyme: freeze_vit)")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward to save memory")
    bf16: bool | None = _f(None, "bf16 weights/compute; None = on CUDA only")
    attn_implementation: str | None = _f(None, "None = flash_attention_2 on CUDA when installed, else sdpa")
    deepspeed: str = _f("zero2", "DeepSpeed config: a name in infra/deepspeed/ (zero2, zero3) or a path")
    nproc: int = _f(1, "processes (GPUs) per node for torchrun")
    nnodes: int = _f(1, "nodes of the run (each runs nproc ranks; node runs meet at a static rendezvous at node 0)")
    dataset: str = _f("", "dataset version NAME@HASH to train on (pulled into the home); '' = the home's catalog")
    save_steps: int = _f(500, "checkpoint every N optimizer steps (and at the end)")
    keep_checkpoints: int = _f(2, "how many step checkpoints to keep")
    log_steps: int = _f(1, "log metrics every N steps")
    loss_chunk: int = _f(1024, "labelled positions per chunk of the loss's LM head (bounds the fp32 logits)")

    def __post_init__(self):
        if self.stage not in (1, 2):
            raise ThymeError(f"stage must be 1 or 2, not {self.stage}")
        if self.nnodes < 1:
            raise ThymeError(f"nnodes must be >= 1, not {self.nnodes}")
        if self.global_batch % (self.micro_batch * self.world):
            raise ThymeError(f"global_batch {self.global_batch} is not a multiple of micro_batch * nproc * nnodes "
                             f"({self.micro_batch} * {self.nproc} * {self.nnodes})")
        if not 0.0 < self.adam_beta2 < 1.0:
            raise ThymeError(f"adam_beta2 must be in (0, 1), not {self.adam_beta2}")
        if self.image_ratio is not None and not 0.0 <= self.image_ratio <= 1.0:
            raise ThymeError(f"image_ratio must be in [0, 1], not {self.image_ratio}")
        if self.max_length < 16 or self.epochs < 1 or self.save_steps < 1 or self.loss_chunk < 1:
            raise ThymeError("max_length >= 16, epochs >= 1, save_steps >= 1 and loss_chunk >= 1 are required")
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "system_prompt", resolved_system_prompt(self.system_prompt))

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes

    @property
    def accumulation(self) -> int:
        return self.global_batch // (self.micro_batch * self.world)


def load_preset(name_or_path: str, **overrides) -> SftConfig:
    """infra/presets/<name>.yaml (or a path) with overrides applied; unknown keys are an error."""
    return presets.load_preset(SftConfig, name_or_path, **overrides)


def help_text() -> str:
    """Every field with its default and help, for `--help-config`."""
    return presets.help_text(SftConfig, 24, 36)
