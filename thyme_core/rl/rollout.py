"""GRPO-ATS rollouts: G trajectories per prompt through the same agent loop as inference and evaluation.

Each trajectory is sampled with Thyme's adaptive temperatures: text at `text_temperature` (1.0), each code
segment from `<code>` to `</code>` at `code_temperature` (0), split by the loop itself (agent/loop.py). The
sandbox output (text, error or image) is appended with mask 0, so what carries loss is exactly what the
policy sampled. The trajectory keeps the engine's own token ids (never re-tokenized), its images and its mask.

Limits: rounds (`max_rounds`), a token budget (`max_length`, expanded tokens, and `max_new_tokens` per
generation call) and images per trajectory (`max_images`, the prompt image included). The loop stops at each
of them by itself (stop reasons round_limit, budget / length, image_limit: an output that would pass the
image limit is not appended). A trajectory stopped by one (`Rollout.limit`, the stop reason) keeps its
reward but, with `mask_limited` (the default), is left out of the loss rather than punished: its reward says
more about the budget than about the policy. Its group still uses its reward for the group mean and std.

The G members of a group are samples `"{prompt_id}:{g}"` of the same stored image and question: a sample id
of its own gives each member its own sampling seed and its own sandbox session. All prompts x G of a step
run as one lockstep batch (agent/loop.py: one backend call per step, sandbox runs concurrent); the output
stays group by group. `rollout_timed` also says where the batch's time went.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from thyme_core.agent.backends.base import Backend, FedImage
from thyme_core.agent.config import AgentConfig, pick
from thyme_core.agent.loop import AgentSample, BatchTiming, Trajectory
from thyme_core.agent.runner import Agent
from thyme_core.base.errors import ThymeError
from thyme_core.base.presets import setting as _f

# stop reasons that mean a limit cut the trajectory short (they are also Rollout.limit)
LIMIT_STOPS = ("round_limit", "budget", "length", "image_limit")


@dataclass(frozen=True)
class RolloutConfig(AgentConfig):
    """Every AgentConfig setting (GRPO-ATS defaults where they differ) plus what makes rollouts a group."""

    text_temperature: float = _f(1.0, "sampling temperature of text (outside <code>...</code>)")
    top_p: float = _f(0.9, "nucleus sampling of text segments (GRPO-ATS preset)")
    top_k: int = _f(50, "top-k of text segments (GRPO-ATS preset)")
    repetition_penalty: float = _f(1.05, "repetition penalty of text segments (GRPO-ATS preset); code stays greedy")
    max_images: int = _f(10, "images per trajectory, the prompt image included")
    max_new_tokens: int = _f(3196, "tokens per generation call")
    group_size: int = _f(4, "G: trajectories per prompt")
    mask_limited: bool = _f(True, "leave trajectories that hit a limit out of the loss (else they train as is)")

    def __post_init__(self):
        try:
            super().__post_init__()
        except ValueError as exc:
            raise ThymeError(str(exc)) from None
        if self.group_size < 1 or self.max_images < 1:
            raise ThymeError("group_size >= 1 and max_images >= 1 are required")

    def agent_config(self) -> AgentConfig:
        """The loop's settings, by field name."""
        return pick(AgentConfig, self)


@dataclass(frozen=True)
class RLPrompt:
    """One RL example: an image, a question, and the reference solution the rewards compare with."""

    prompt_id: str
    image: bytes | str | Path
    question: str
    solution: str


@dataclass
class Rollout:
    prompt: RLPrompt
    member: int  # index in its group
    trajectory: Trajectory
    images: list[FedImage]  # every image of the trajectory, in the order of its pads (prompt, then fed back)
    limit: str = ""  # "" or the limit it hit (its stop reason): round_limit / budget / length / image_limit

    @property
    def completion(self) -> str:
        """What the rewards read: the model's own text of the assistant turn. Sandbox outputs are left out:
        text printed by code is data, so an `<answer>` or `<think>` in it never counts as the model's."""
        return self.trajectory.model_text


def make_agent(backend: Backend, home, config: RolloutConfig, pool=None, run_id: str = "rl") -> Agent:
    """An Agent set up for GRPO-ATS rollouts (pool None: the process-wide sandbox pool)."""
    return Agent(backend, home, config.agent_config(), pool=pool, run_id=run_id)


def trajectory_images(traj: Trajectory) -> list[FedImage]:
    """The images of a trajectory as the model saw them, in pad order: the prompt's, then each fed-back one."""
    first = traj.ledger.images[0]
    sample = traj.sample
    images = [FedImage(sample.image, first.width, first.height, sample.sha256, sample.image_ref)]
    images += [im for e in traj.executions for im in e.images]
    if [(i.width, i.height) for i in images] != [(s.width, s.height) for s in traj.ledger.images]:
        raise ThymeError(f"{sample.sample_id}: the trajectory's images do not match its ledger")
    return images


@dataclass(frozen=True)
class RolloutTiming:
    """Where the time of one step's rollouts went (agent/loop.py BatchTiming, with the rollout rate)."""

    rollouts: int
    wall_s: float
    generate_s: float  # the engine generating
    sandbox_s: float  # the executions' own durations summed (they overlap each other and generation)
    engine_wait_s: float  # the engine idle: wall_s - generate_s

    @classmethod
    def of(cls, timing: BatchTiming) -> "RolloutTiming":
        return cls(timing.trajectories, timing.wall_s, timing.generate_s, timing.sandbox_s, timing.engine_wait_s)

    def __add__(self, other: "RolloutTiming") -> "RolloutTiming":
        """Rollouts run one after another: every figure adds up."""
        return RolloutTiming(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

    @property
    def rollouts_per_s(self) -> float:
        return self.rollouts / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def engine_wait_share(self) -> float:
        return self.engine_wait_s / self.wall_s if self.wall_s > 0 else 0.0


def limit_of(traj: Trajectory) -> str:
    """The limit a trajectory hit ("" when it ended on its own: an answer or EOS): the loop stops at every
    limit itself, so this is its stop reason."""
    return traj.stop_reason if traj.stop_reason in LIMIT_STOPS else ""


def group_samples(agent: Agent, prompts: list[RLPrompt], config: RolloutConfig) -> list[AgentSample]:
    """G samples `"{prompt_id}:{g}"` per prompt, group by group (each prompt's image stored once)."""
    out = []
    for prompt in prompts:
        sample = agent.sample(prompt.prompt_id, prompt.image, prompt.question)
        out += [dataclasses.replace(sample, sample_id=f"{prompt.prompt_id}:{g}") for g in range(config.group_size)]
    return out


def rollout_timed(agent: Agent, prompts: list[RLPrompt], config: RolloutConfig
                  ) -> tuple[list[Rollout], RolloutTiming]:
    """Every prompt x G in one lockstep batch; G consecutive rollouts per prompt (the layout
    grpo.group_advantages expects), and the batch's timing."""
    if agent.config != config.agent_config():
        raise ThymeError("the agent's settings differ from the rollout config: build it with make_agent")
    trajs, timing = agent.run_samples(group_samples(agent, prompts, config))
    g = config.group_size
    out = [Rollout(prompts[i // g], i % g, t, trajectory_images(t), limit_of(t)) for i, t in enumerate(trajs)]
    return out, RolloutTiming.of(timing)


def rollout(agent: Agent, prompts: list[RLPrompt], config: RolloutConfig) -> list[Rollout]:
    """rollout_timed without the timing."""
    return rollout_timed(agent, prompts, config)[0]


def loss_keep(rollouts: list[Rollout], config: RolloutConfig) -> list[bool]:
    """Which rollouts may carry loss as far as limits go (all of them without mask_limited)."""
    return [not (config.mask_limited and r.limit) for r in rollouts]
