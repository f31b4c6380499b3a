"""GRPO-ATS reinforcement learning, in separable pieces, none of them a trainer class:

- rewards.py (by name) and judge.py (an OpenAI-compatible LLM judge client): pure scoring, no torch;
- rollout.py: G trajectories per prompt through the agent loop, one lockstep batch per step;
- grpo.py: group advantages and the clipped policy loss with a k3 KL, from tensors;
- logprobs.py: chunked, checkpointed token log-probs of a whole trajectory;
- update.py: the ranks' collectives and who applies the gradient (plain AdamW or a DeepSpeed engine);
- step.py: one step from those pieces; sync.py: trainer weights into the rollout engine;
- run.py (runs, keys, resume, the step loop), entry.py (the torchrun ranks), store.py (the catalog), data.py
  (prompts), config.py (presets).
Import the submodules themselves: rewards and the judge need no torch, the rest does."""
