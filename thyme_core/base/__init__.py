"""Foundations every stage uses: errors, reason codes, atomic file writes, the data home, presets, the warm
process pool and code versions for run keys. Nothing here knows about a stage."""
