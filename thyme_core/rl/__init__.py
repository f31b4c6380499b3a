"""GRPO-ATS reinforcement learning, in separable pieces: rewards by name (rewards.py), the LLM judge client
(judge.py) and the loss from tensors (grpo.py). The rollout loop, the DeepSpeed update and weight sync
build on these. Import the submodules themselves: rewards and the judge need no torch, grpo does."""
