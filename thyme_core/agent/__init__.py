"""The agent loop shared by inference, evaluation and RL rollouts: prompt, generation backends, sandbox
feedback, exact token accounting, answer extraction and scoring, trajectory records."""

from thyme_core.agent.answers import clean_answer, extract_answer, match_choice, score_choice
from thyme_core.agent.backends import make_backend
from thyme_core.agent.backends.base import Backend, FedImage, Generation, GenerationRequest
from thyme_core.agent.codec import ByteCodec, Codec, HFCodec
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.ledger import ImageSlot, TokenLedger, fit_image, image_tokens
from thyme_core.agent.loop import AgentSample, Execution, Trajectory, Turn, run_trajectory
from thyme_core.agent.prompt import Prompt, load_system_prompt, text_turn, user_turn
from thyme_core.agent.runner import Agent

__all__ = [
    "Agent", "AgentConfig", "AgentSample", "Backend", "ByteCodec", "Codec", "Execution", "FedImage", "Generation",
    "GenerationRequest", "HFCodec", "ImageSlot", "Prompt", "TokenLedger", "Trajectory", "Turn", "clean_answer",
    "extract_answer", "fit_image", "image_tokens", "load_system_prompt", "make_backend", "match_choice",
    "run_trajectory", "score_choice", "text_turn", "user_turn",
]
