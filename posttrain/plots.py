"""Plots written next to a run's outputs: the training curves people look at first.

`saved_figure` is the one place figures are set up and saved (matplotlib's Agg backend, so it works on
machines without a display); the evaluation figures in ``eval.plots`` draw through it too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Curves worth a panel when present: loss for every method; reward statistics for GRPO.
CURVES = ("loss", "reward", "frac_reward_zero_std", "completions/mean_length", "kl", "entropy")

DPI = 110


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def saved_figure(
    path: str | Path, what: str, *, dpi: int = DPI, **subplots: Any
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(figure, axes)`` from ``pyplot().subplots(**subplots)``; on leaving, lay out and save to ``path``.

    The parent folder is created, the figure is always closed (also when drawing fails, in which case
    nothing is saved), and ``what`` names the figure in the log line that gives its path.
    """
    path = Path(path)
    plt = pyplot()
    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    logger.info("%s: %s", what, path)


def plot_training_curves(log_history: list[dict], path: Path, title: str = "") -> Path | None:
    """One panel per logged curve (plus one per reward function), against the optimizer step."""
    keys = [k for k in CURVES if any(k in e for e in log_history)]
    keys += sorted({k for e in log_history for k in e if k.startswith("rewards/") and k.endswith("/mean")})
    if not keys:
        return None
    panels = {"ncols": len(keys), "figsize": (3.2 * len(keys), 2.8), "squeeze": False}
    with saved_figure(path, "Training curves", **panels) as (fig, axes):
        for ax, key in zip(axes[0], keys, strict=True):
            points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
    return Path(path)
