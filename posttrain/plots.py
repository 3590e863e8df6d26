"""Plots written next to a run's outputs: the training curves people look at first."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Curves worth a panel when present: loss for every method; reward statistics for GRPO.
CURVES = ("loss", "reward", "frac_reward_zero_std", "completions/mean_length", "kl", "entropy")


def plot_training_curves(log_history: list[dict], path: Path, title: str = "") -> Path | None:
    """One panel per logged curve (plus one per reward function), against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in CURVES if any(k in e for e in log_history)]
    keys += sorted({k for e in log_history for k in e if k.startswith("rewards/") and k.endswith("/mean")})
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("Training curves: %s", path)
    return path
