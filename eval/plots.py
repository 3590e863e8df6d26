"""Evaluation figures: the reliability diagram ConfTuner reports ("ConfTuner: Training Large Language Models
to Express Their Confidence Verbally") and grouped bars that compare models metric by metric.

Both are set up and saved by ``posttrain.plots.saved_figure`` (matplotlib's Agg backend, so they work on
machines without a display).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.calibration import ece_from_bins, reliability_bins
from posttrain.plots import saved_figure


def reliability_diagram(
    data: Sequence[Mapping[str, Any]] | tuple[Sequence[float], Sequence[bool | float]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration, bin counts below it.

    ``data`` is either the output of ``reliability_bins`` or a ``(conf, correct)`` pair, binned here into 10
    equal-width bins. The ECE goes in the title.
    """
    if isinstance(data, tuple):
        conf, correct = data
        bins = reliability_bins(conf, correct)
    else:
        bins = list(data)
    ece = ece_from_bins(bins)
    filled = [b for b in bins if b["count"]]
    layout = {"nrows": 2, "figsize": (4.2, 4.8), "sharex": True, "gridspec_kw": {"height_ratios": [3, 1]}}
    with saved_figure(path, "Reliability diagram", **layout) as (_, (top, bottom)):
        _draw_reliability(top, bottom, filled, ece, title)
    return Path(path)


def reliability_grid(
    panels: Sequence[tuple[str, Sequence[Mapping[str, Any]] | None]], path: str | Path, columns: int
) -> Path:
    """Reliability diagrams side by side, ``columns`` to a row: each panel is a title and the output of
    ``reliability_bins`` (None leaves the panel empty, say for a model that stated no confidence)."""
    rows = math.ceil(len(panels) / columns)
    layout = {
        "nrows": 2 * rows,
        "ncols": columns,
        "figsize": (3.4 * columns, 4.0 * rows),
        "squeeze": False,
        "gridspec_kw": {"height_ratios": [3, 1] * rows},
    }
    with saved_figure(path, "Reliability diagrams", **layout) as (_, axes):
        for index in range(rows * columns):
            top, bottom = (
                axes[2 * (index // columns)][index % columns],
                axes[2 * (index // columns) + 1][index % columns],
            )
            if index >= len(panels) or panels[index][1] is None:
                if index < len(panels):
                    top.set_title(f"{panels[index][0]}  (no confidence)", fontsize=9)
                top.axis("off")
                bottom.axis("off")
                continue
            title, bins = panels[index]
            _draw_reliability(top, bottom, [b for b in bins if b["count"]], ece_from_bins(bins), title)
            top.title.set_fontsize(8)
            bottom.set_xlim(0, 1)  # the panels are compared by eye: one confidence axis for all
    return Path(path)


def _draw_reliability(top, bottom, filled: list[Mapping[str, Any]], ece: float, title: str) -> None:
    lefts = [b["lo"] for b in filled]
    widths = [b["hi"] - b["lo"] for b in filled]
    top.bar(
        lefts,
        [b["accuracy"] for b in filled],
        width=widths,
        align="edge",
        edgecolor="black",
        linewidth=0.6,
        label="accuracy",
    )
    # The gap between each bin's mean confidence and its accuracy is what ECE averages.
    top.scatter(
        [b["mean_confidence"] for b in filled],
        [b["accuracy"] for b in filled],
        color="tab:red",
        s=14,
        zorder=3,
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy", fontsize=8)
    top.legend(fontsize=7, loc="upper left")
    top.tick_params(labelsize=7)
    ece_text = "n/a" if math.isnan(ece) else f"{ece:.3f}"
    top.set_title(f"{title}  (ECE {ece_text})" if title else f"ECE {ece_text}", fontsize=9)
    bottom.bar(lefts, [b["count"] for b in filled], width=widths, align="edge", color="tab:gray")
    bottom.set_xlabel("stated confidence", fontsize=8)
    bottom.set_ylabel("samples", fontsize=8)
    bottom.tick_params(labelsize=7)


def comparison_plot(
    summaries: Mapping[str, Mapping[str, float]],
    path: str | Path,
    metrics: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Grouped bars: one group per metric, one bar per model, the value printed on each bar.

    ``summaries`` maps a model name to its metrics (say the output of ``calibration_summary`` or
    ``aggregate``). ``metrics`` picks and orders the groups; by default every float-valued metric of any
    model, in order of first appearance (integer counts such as ``n`` would dwarf the rest). A metric a model
    lacks, or reports as nan, leaves a gap.
    """
    if metrics is None:
        metrics = []
        for summary in summaries.values():
            metrics += [k for k, v in summary.items() if isinstance(v, float) and k not in metrics]
    models = list(summaries)
    figsize = (max(4.0, 1.2 + len(metrics) * (0.5 + 0.25 * len(models))), 3.2)
    with saved_figure(path, "Comparison plot", figsize=figsize) as (_, ax):
        _draw_comparison(ax, summaries, models, metrics, title)
    return Path(path)


def _draw_comparison(
    ax, summaries: Mapping[str, Mapping[str, float]], models: list[str], metrics: Sequence[str], title: str
) -> None:
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        xs, heights = [], []
        for i, metric in enumerate(metrics):
            value = summaries[model].get(metric)
            if isinstance(value, int | float) and not math.isnan(value):
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(float(value))
        bars = ax.bar(xs, heights, width=width, label=model)
        ax.bar_label(bars, fmt="%.3g", fontsize=6)
    ax.set_xticks(range(len(metrics)), list(metrics), fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.axhline(0, color="black", linewidth=0.6)
    if models:
        ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
