"""`Agent`: a backend, a sandbox pool, settings and a data home, ready to run trajectories.

    agent = Agent(make_backend("transformers", None, home), home, AgentConfig())
    traj = agent.run("sample-1", "photo.jpg", "What does the sign say?")
    trajs, timing = agent.run_samples([agent.sample(f"s{i}", p, q) for i, (p, q) in enumerate(items)])

`run_samples` runs many trajectories in lockstep (loop.run_trajectories: one backend call per step, the
sandbox runs of a step concurrently); `run_sample` is its one-trajectory case.

Input images and every image the sandbox feeds back go to the data home's content-addressed image store, so
trajectory records refer to images by sha256 and a home-relative path, like the prepared SFT data.
"""

from __future__ import annotations

from pathlib import Path

from thyme_core.agent.backends.base import Backend
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.loop import AgentSample, BatchTiming, Trajectory, run_trajectories
from thyme_core.agent.prompt import Prompt, load_system_prompt, user_turn
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.images.store import ImageStore, prepare_image
from thyme_core.base.reasons import Rejected


def sandbox_limits(config: AgentConfig):
    from thyme_core.sandbox import Limits

    return Limits(timeout_s=config.timeout_s, cpu_s=max(1, int(config.timeout_s)))


class Agent:
    def __init__(self, backend: Backend, home: DataHome, config: AgentConfig = AgentConfig(), pool=None,
                 run_id: str = "adhoc"):
        self.backend, self.home, self.config, self.run_id = backend, home.ensure(), config, run_id
        self.system = load_system_prompt(config.system_prompt or None)
        self.store = ImageStore(home.root, home.tmp_dir)
        self._pool = pool

    @property
    def pool(self):
        if self._pool is None:
            from thyme_core.sandbox import shared_pool

            self._pool = shared_pool(self.config.isolation, sandbox_limits(self.config))
        return self._pool

    def store_bytes(self, data: bytes) -> tuple[str, Path, str, int, int]:
        """(sha256, host path, home-relative path, width, height) of an image put in the store."""
        try:
            image = prepare_image(data)
        except Rejected as exc:
            raise ThymeError(f"unusable image: {exc}") from None
        self.store.put(image)
        return image.sha256, self.home.absolute(image.relpath), image.relpath, image.width, image.height

    def _store_output(self, data: bytes) -> tuple[str, Path, str]:
        sha, host, rel, _, _ = self.store_bytes(data)
        return sha, host, rel

    def sample(self, sample_id: str, image: bytes | str | Path, question: str) -> AgentSample:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        sha, host, rel, w, h = self.store_bytes(data)
        return AgentSample(sample_id, question, host, rel, w, h, sha)

    def run(self, sample_id: str, image: bytes | str | Path, question: str) -> Trajectory:
        return self.run_sample(self.sample(sample_id, image, question))

    def run_sample(self, sample: AgentSample) -> Trajectory:
        (traj,), _ = self.run_samples([sample])
        return traj

    def run_samples(self, samples: list[AgentSample]) -> tuple[list[Trajectory], BatchTiming]:
        """The trajectories of `samples` (in order, ids distinct), generated in lockstep, and the batch's timing."""
        prompts = [Prompt(self.system, user_turn(s.question, s.image_ref, s.width, s.height)) for s in samples]
        sessions = [f"agent-{self.run_id}-{s.sample_id}" for s in samples]
        return run_trajectories(samples, self.backend, self.pool, self.config, self._store_output, sessions, prompts)
