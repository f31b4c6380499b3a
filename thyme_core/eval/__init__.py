"""Evaluation: benchmarks in VLMEvalKit TSV form (benchmarks.py) run through the agent loop and scored (evaluate.py)."""
