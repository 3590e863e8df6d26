"""Evaluation: generate completions for held-out prompts and score them with the same reward functions
used in training."""
