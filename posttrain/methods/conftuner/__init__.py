"""ConfTuner ("ConfTuner: Training Large Language Models to Express Their Confidence Verbally", Li et al., 2025).

The model answers its training questions itself, a judge marks each answer right or wrong, and SFT with the
tokenized Brier loss teaches it to follow its own answer with a calibrated ``Confidence (0-N): c``.
"""
