"""Turn scored samples into the summary of an evaluation run, its reliability diagram, and comparisons."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from eval.calibration import calibration_summary, reliability_bins
from eval.metrics import aggregate, sample_metrics
from eval.plots import comparison_plot, reliability_diagram

logger = logging.getLogger(__name__)

HEADLINE = ("pass@1", "maj@", "mean@", "ece", "brier", "auroc", "logit_ece", "logit_brier", "logit_auroc")


def _ks(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks if ks[-1] == n else [*ks, n]


def _metrics(rows: list[dict], args) -> dict[str, Any]:
    """pass@k, maj@k, mean@k of the first scorer and every scorer's mean reward over ``rows``; a metric that is
    undefined here is None, with the reason in ``notes``."""
    names = list(rows[0]["scores"])
    per_prompt = [
        sample_metrics(row["scores"][names[0]], row["answers"], _ks(args.n), threshold=args.threshold)
        for row in rows
    ]
    metrics: dict[str, Any] = aggregate(per_prompt)  # "prompts" included
    unscored = "undefined: no sample was scored ({} returned None for every one)"
    reasons = {f"mean@{args.n}": f"mean@{args.n} " + unscored.format(names[0])}
    for name in names:
        values = [s for row in rows for s in row["scores"][name] if s is not None]
        metrics[f"mean_reward/{name}"] = sum(values) / len(values) if values else math.nan
        reasons[f"mean_reward/{name}"] = "mean reward " + unscored.format(name)
    return explain_undefined(metrics, reasons)


def explain_undefined(metrics: dict[str, Any], reasons: dict[str, str]) -> dict[str, Any]:
    """``metrics`` with every nan replaced by None, and a ``notes`` entry saying why each of those is undefined
    (from ``reasons``, by key). Strict JSON has no NaN, and a bare null would not say what happened."""
    notes = metrics.pop("notes", {})  # put back last, after the metrics it explains
    for key, value in metrics.items():
        if isinstance(value, float) and math.isnan(value):
            metrics[key] = None
            notes[key] = reasons.get(key, f"{key} undefined")
    if notes:
        metrics["notes"] = notes
    return metrics


def summarize_samples(rows: list[dict], args, out: Path, label: str) -> dict[str, Any]:
    """Metrics over every prompt's samples (and per group with ``group_by``); the first scorer decides
    correctness."""
    primary = next(iter(rows[0]["scores"]))
    summary: dict[str, Any] = {"model": label, "scorer": primary, "n": args.n, **_metrics(rows, args)}
    reasons = {"confidence_stated": "confidence_stated undefined: no samples"}
    if getattr(args, "group_by", None):
        by_group: dict[str, list[dict]] = {}
        for row in rows:
            by_group.setdefault(str(row.get("group")), []).append(row)
        summary["groups"] = {g: _metrics(by_group[g], args) for g in sorted(by_group)}
        for group, metrics in summary["groups"].items():
            logger.info(
                "%s [%s=%s]: %s",
                label,
                args.group_by,
                group,
                ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if _headline(k, v)),
            )
    if args.confidence:
        pairs = [
            (c, float(s is not None and s >= args.threshold))
            for row in rows
            for c, s in zip(row["confidences"], row["scores"][primary], strict=True)
            if c is not None
        ]
        total = sum(len(row["confidences"]) for row in rows)
        summary["confidence_stated"] = len(pairs) / total if total else math.nan
        if pairs:
            conf, correct = [p[0] for p in pairs], [p[1] for p in pairs]
            calibration = calibration_summary(conf, correct)
            calibration["calibrated_samples"] = calibration.pop("n")  # "n" already means samples per prompt
            summary.update(calibration)
            summary["reliability"] = reliability_bins(conf, correct)
            reliability_diagram(
                summary["reliability"], out / "reliability.png", title=f"{label} ({len(pairs)} answers)"
            )
            verdict = "correct" if all(correct) else "wrong"
            reasons["auroc"] = (
                f"AUROC undefined: all {len(pairs)} answers that state a confidence are {verdict}"
            )
        else:
            summary.setdefault("notes", {})["calibration"] = (
                "no sample stated a confidence: no ECE, Brier or AUROC"
            )
    if rows and "logit_confidences" in rows[0]:
        logit = _logit_calibration(rows, primary, args, out, label, reasons)
        summary.setdefault("notes", {}).update(logit.pop("notes", {}))
        summary.update(logit)
        if not summary["notes"]:
            del summary["notes"]
    summary = explain_undefined(summary, reasons)
    logger.info("%s: %s", label, ", ".join(f"{k}={v:.3f}" for k, v in summary.items() if _headline(k, v)))
    return summary


def _logit_calibration(
    rows: list[dict], primary: str, args, out: Path, label: str, reasons: dict[str, str]
) -> dict[str, Any]:
    """Calibration of the confidence read from the answer's token probabilities (``logit_confidence``), as
    ``logit_*`` keys, with its reliability diagram in ``reliability_logit.png``."""
    pairs = [
        (c, float(s is not None and s >= args.threshold))
        for row in rows
        for c, s in zip(row["logit_confidences"], row["scores"][primary], strict=True)
        if c is not None
    ]
    if not pairs:
        return {"notes": {"logit_calibration": "every answer was empty: no logit-based confidence"}}
    conf, correct = [p[0] for p in pairs], [p[1] for p in pairs]
    calibration = calibration_summary(conf, correct)
    result = {
        f"logit_{k}": v for k, v in calibration.items() if k in ("ece", "brier", "auroc", "mean_confidence")
    }
    result["logit_confidence"] = args.logit_confidence
    result["logit_calibrated_samples"] = calibration["n"]
    result["logit_reliability"] = reliability_bins(conf, correct)
    reliability_diagram(
        result["logit_reliability"],
        out / "reliability_logit.png",
        title=f"{label}, answer probability ({args.logit_confidence}, {len(pairs)} answers)",
    )
    verdict = "correct" if all(correct) else "wrong"
    reasons["logit_auroc"] = f"logit AUROC undefined: all {len(pairs)} non-empty answers are {verdict}"
    return result


def _headline(key: str, value: Any) -> bool:
    return isinstance(value, float) and (key.startswith(HEADLINE) or key.startswith("mean_reward/"))


def write_comparison(results: dict[str, dict], out: Path) -> None:
    """A table (log and JSON) and a grouped-bar plot of the headline metrics across models."""
    metrics: list[str] = []
    for summary in results.values():  # a metric undefined (None) for one model may be defined for another
        metrics += [k for k, v in summary.items() if _headline(k, v) and k not in metrics]
    table = {label: {k: summary.get(k) for k in metrics} for label, summary in results.items()}
    write_json(out / "comparison.json", table)
    width = max(len(label) for label in table) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{m:>14}" for m in metrics)]
    for label, values in table.items():
        cells = ("n/a" if values[m] is None else f"{values[m]:.3f}" for m in metrics)
        lines.append(f"{label:<{width}}" + "".join(f"{cell:>14}" for cell in cells))
    logger.info("Comparison:\n%s", "\n".join(lines))
    comparison_plot(table, out / "comparison.png", metrics=metrics, title="Model comparison")


def write_json(path: Path, data: Any) -> None:
    """``data`` as strict JSON (indented): a NaN or infinity raises rather than writing what strict readers
    reject; summaries replace them with None first (see ``explain_undefined``)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False), encoding="utf-8")
