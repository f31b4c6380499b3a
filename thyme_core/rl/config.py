"""RL run configuration: one flat dataclass (fields with help text, validated), loaded from a YAML preset.

Flat so a preset reads like the paper's table and `--set key=value` reaches every field. It extends
RolloutConfig (which extends the agent loop's AgentConfig), so every sampling, loop and sandbox setting is an
RL setting too, declared once; `rollout_config()` and `step_config()` build the pieces for rollout.py and
step.py by field name. Fields that do not change what a step computes (max_steps, save_steps, device) stay out
of the run key: a longer rerun continues the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core.base import presets
from thyme_core.base.errors import ThymeError
from thyme_core.rl.grpo import GrpoLossConfig
from thyme_core.rl.rewards import RewardConfig
from thyme_core.agent.config import pick
from thyme_core.rl.rollout import RolloutConfig
from thyme_core.rl.step import StepConfig
from thyme_core.base.presets import setting as _f
from thyme_core.runs.config import RunConfig


@dataclass(frozen=True)
class RlConfig(RolloutConfig, RunConfig):
    NOT_HASHED = frozenset({"max_steps", "save_steps", "device", "vllm_gpu_memory", "isolation", "dataset"})

    model: str = _f("", "policy to train: a model folder; '' = the tiny offline Qwen2.5-VL in the home")
    split: str = _f("", "data split of rl_samples (or of sft_samples, the fallback); '' = every split")
    limit: int = _f(0, "use the first N prompts by id (0 = all)")
    prompts_per_step: int = _f(2, "prompts per optimizer step (each rolled out group_size times)")
    max_steps: int = _f(4, "optimizer steps in all (a rerun with more continues the same run)")
    save_steps: int = _f(2, "checkpoint every N steps (and at the end)")
    learning_rate: float = _f(5e-7, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    min_pixels: int = _f(3136, "smallest image area given to the processor")
    max_pixels: int = _f(2408448, "largest image area given to the processor")
    rewards: tuple = _f(("combined",), "reward names (rewards.REWARDS), summed")
    beta: float = _f(0.01, "k3 KL weight to the frozen reference")
    clip_eps: float = _f(0.2, "PPO clip range")
    norm_tokens: int = _f(0, "loss per sequence: 0 its token mean; N > 0 its token sum / N (Dr. GRPO: no length bias)")
    inner_steps: int = _f(1, "optimizer steps per batch of rollouts")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0: none)")
    seed: int = _f(0, "seed of sampling (step s samples with seed + s; each member + a hash of its id) and of torch")
    device: str = _f("auto", "in-process mode (nproc 0): cpu, cuda, or auto (cuda when available)")
    nproc: int = _f(0, "0: one process, plain AdamW, the policy generates its own rollouts; N >= 1: torchrun "
                       "N ranks, a DeepSpeed engine, a rollout engine per rank synced after every update")
    nnodes: int = _f(1, "nodes of the run (nproc >= 1; each runs nproc ranks; node runs meet at node 0: static rendezvous)")
    deepspeed: str = _f("zero3", "DeepSpeed config with nproc >= 1: a name in infra/deepspeed/ or a path")
    rollout_engine: str = _f("transformers", "with nproc >= 1: transformers, or vllm (GPU, in-process)")
    vllm_gpu_memory: float = _f(0.35, "vLLM's share of GPU memory (the trainer needs the rest)")
    logprob_chunk: int = _f(1024, "positions per chunk of the training log-probs (bounds the fp32 logits)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (nproc >= 1; long trajectories, big models)")
    freeze_vision: bool = _f(False, "keep the vision tower and merger fixed")
    dataset: str = _f("", "dataset version NAME@HASH to take prompts from (pulled into the home); '' = the home")

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "rewards", tuple(self.rewards))
        if self.prompts_per_step < 1 or self.max_steps < 0 or self.save_steps < 1 or self.limit < 0:
            raise ThymeError("prompts_per_step >= 1, max_steps >= 0, save_steps >= 1 and limit >= 0 are required")
        if not self.learning_rate > 0:
            raise ThymeError(f"learning_rate must be > 0, not {self.learning_rate}")
        if self.nproc < 0 or self.logprob_chunk < 1 or not 0 < self.vllm_gpu_memory < 1:
            raise ThymeError("nproc >= 0, logprob_chunk >= 1 and 0 < vllm_gpu_memory < 1 are required")
        if self.rollout_engine not in ("transformers", "vllm"):
            raise ThymeError(f"rollout_engine must be transformers or vllm, not {self.rollout_engine!r}")
        if self.rollout_engine == "vllm" and self.nproc < 1:
            raise ThymeError("the vllm rollout engine needs the DeepSpeed mode (nproc >= 1)")
        if self.nnodes < 1 or (self.nnodes > 1 and self.nproc < 1):
            raise ThymeError(f"nnodes must be >= 1, and a multi-node run needs nproc >= 1 (nnodes {self.nnodes}, "
                             f"nproc {self.nproc})")
        if self.nproc and self.prompts_per_step < self.world:
            raise ThymeError(f"prompts_per_step ({self.prompts_per_step}) must be >= nproc * nnodes ({self.world}): "
                             "every rank rolls out whole groups of its own")
        self.step_config()  # its own checks

    @property
    def world(self) -> int:
        """Ranks of the run (0: the in-process mode)."""
        return self.nproc * self.nnodes

    def rollout_config(self, step: int) -> RolloutConfig:
        """Step `step`'s rollouts: every rollout/agent field by name, sampled with seed + step."""
        return pick(RolloutConfig, self, seed=self.seed + step)

    def step_config(self) -> StepConfig:
        return StepConfig(rewards=self.rewards, inner_steps=self.inner_steps, max_grad_norm=self.max_grad_norm,
                          logprob_chunk=self.logprob_chunk,
                          loss=GrpoLossConfig(clip_eps=self.clip_eps, beta=self.beta,
                                              norm_tokens=self.norm_tokens), reward=RewardConfig())


def load_preset(name_or_path: str, **overrides) -> RlConfig:
    """infra/presets/<name>.yaml (or a path) with overrides applied; unknown keys are an error."""
    return presets.load_preset(RlConfig, name_or_path, **overrides)


def help_text() -> str:
    """Every field with its default and help, for `--help-config`."""
    return presets.help_text(RlConfig, 20, 16)
