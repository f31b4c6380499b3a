"""Running the loop from a command: which backend (a small spec that travels to Prefect tasks), one cached
backend per process, one recorded inference, and a readable print of a trajectory."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from thyme_core.agent.backends import make_backend
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.loop import Trajectory
from thyme_core.agent.records import publish, to_records
from thyme_core.agent.runner import Agent
from thyme_core.base.home import DataHome


@dataclass(frozen=True)
class BackendSpec:
    name: str = field(default="transformers", metadata={"help": "transformers, vllm, openai or scripted"})
    model: str = field(default="", metadata={"help": "checkpoint folder ('' = tiny offline model) or base URL (openai)"})
    response_file: str = field(default="", metadata={"help": "scripted backend: text or .jsonl of responses"})
    device: str = field(default="cpu", metadata={"help": "transformers device"})
    served_model: str = field(default="", metadata={"help": "openai: the model name the server knows"})

    def fingerprint(self) -> str:
        """What identifies the generator: the response file's content, not its path, for scripted runs."""
        text = f"{self.name}:{self.model}:{self.served_model}"
        if self.response_file:
            text += ":" + hashlib.sha256(Path(self.response_file).read_bytes()).hexdigest()
        return hashlib.sha256(text.encode()).hexdigest()[:12]


_backends: dict[tuple, object] = {}
_backends_lock = threading.Lock()


def cached_backend(spec: BackendSpec, home: DataHome):
    """One backend per spec and process: a model loads once however many shards run in this process."""
    from thyme_core.agent.backends.scripted import load_responses

    key = (spec, str(home.root))
    with _backends_lock:
        if key not in _backends:
            responses = load_responses(spec.response_file) if spec.response_file else None
            _backends[key] = make_backend(spec.name, spec.model or None, home, responses=responses,
                                          device=spec.device, served_model=spec.served_model or None)
        return _backends[key]


def infer(image: str | Path, question: str, home: DataHome, spec: BackendSpec, config: AgentConfig,
          run_id: str = "infer") -> tuple[Trajectory, Path]:
    """Run one trajectory and record it under shards/agent/; returns it and its shard folder."""
    backend = cached_backend(spec, home)
    agent = Agent(backend, home, config, run_id=run_id)
    data = Path(image).read_bytes()
    sample_id = hashlib.sha256(data + question.encode()).hexdigest()[:16]
    traj = agent.run(sample_id, data, question)
    key = hashlib.sha256(f"{run_id}:{sample_id}:{spec.fingerprint()}:{config.fingerprint()}".encode()).hexdigest()[:24]
    rows = [to_records(traj, run_id, backend=spec.name, model=backend.model, config=config.fingerprint())]
    folder = publish(home, f"infer-{key}", rows)
    return traj, folder


def describe(traj: Trajectory) -> str:
    """The trajectory for a terminal: each round's text, code and sandbox result, then the answer."""
    lines = [f"sample {traj.sample.sample_id}  ({traj.sample.width}x{traj.sample.height} {traj.sample.image_ref})"]
    for turn in traj.turns:
        lines += [f"\n--- round {turn.round}: model ({turn.generated_tokens} tokens, {turn.finish})", turn.text.strip()]
        execution = next((e for e in traj.executions if e.round == turn.round), None)
        if execution is not None:
            shown = ", ".join(f"{im.ref} fed at {im.width}x{im.height}" for im in execution.images)
            detail = shown or (execution.error or execution.stdout).strip()[:500]
            lines += [f"--- sandbox: {execution.status} ({execution.duration_s:.2f}s, fed back: {execution.fed_back})",
                      detail]
    counts = traj.ledger.counts()
    lines += [f"\n=== answer: {traj.answer!r}  (stop: {traj.stop_reason}, rounds: {len(traj.executions)}, tokens: "
              f"{counts['total']} = prompt {counts['prompt']} + generated {counts['generated']} + sandbox "
              f"{counts['sandbox']}; images {len(traj.ledger.images)} / {counts['image']} tokens)"]
    return "\n".join(lines)
