"""DeconfoundLM on real tweets: how well each variant's learned reward tracks the true effect of the text as
confounding grows and as the confounder is recorded less exactly, what each credits on the real outcomes, and
(unless --no-align) what aligning the embedded model with the naive or the deconfounded reward does to the true effect
of what it writes.

    python benchmarks/deconfound.py [--train 800 --test 400 --seeds 0 1] [--no-align]

1. Embedding: trump_tweets' texts through the embedded model (mean of the last hidden states, frozen); kept in
   the output folder and reused by a later run on the same tweets.
2. Semi-synthetic sweeps: outcomes = f*(text) + strength x confounder + noise
   (posttrain.methods.deconfound.simulate), each variant fit on the training tweets' embeddings, and the
   correlation of its reward with f* on the held-out tweets, by confounding strength (the confounder recorded
   exactly), then by the error the confounder is recorded with (at --noisy-strength; the instrumented variant
   uses a second, independent record as its instrument). Plot: one panel each, one line per variant
   (docs/deconfound_sweep.png).
3. Real outcomes: log(1 + retweets), with posting time (year, year^2, UTC hour) and device as confounders; for the
   naive and the joint reward, the held-out correlation of the reward with the outcome and with each interpretable
   text feature (what it credits).
4. Unless --no-align, at --align-strength: the naive and the joint rewards fit and saved; for each, the best-of-n
   stage (the embedded model samples 4 rewrites of each training tweet, the reward keeps one) and SFT on the kept
   ones (recipes/deconfound/best_of_n_*_cpu.yaml, a process each); the base model and both policies rewrite
   held-out tweets (recipes/eval/deconfound_rewrite.yaml); the true f* of every rewrite, and of the rewrites each
   reward kept against all it was offered. --selection-only stops after the stages.

Phases 1-3 print their wall time and the process's peak resident memory; each phase of 4 runs in a process of its
own, recorded in phases.json (a rerun skips what finished).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from phases import Phases  # noqa: E402  (the shared phase runner beside this script)

from posttrain.data import load_registered  # noqa: E402
from posttrain.methods.deconfound.estimators import (  # noqa: E402
    VARIANTS,
    fit_text_reward,
    one_hot,
    two_stage_least_squares,
)
from posttrain.methods.deconfound.reward import write_head_dataset  # noqa: E402
from posttrain.methods.deconfound.simulate import (  # noqa: E402
    CONFOUNDER_FEATURES,
    EFFECT_FEATURES,
    Effect,
    simulate,
    text_features,
)
from rewards.text_reward import embed_texts, save_text_reward  # noqa: E402

logger = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parent.parent
STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0)
RECORDING_ERRORS = (0.0, 0.25, 0.5, 1.0, 2.0)
ALIGNED = ("naive", "joint")  # the rewards the policies are aligned with


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(name: str, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    logger.info("phase %s: %.1f s, peak %.0f MB", name, time.perf_counter() - start, peak_mb())
    return result


def fit_variant(variant, x, sim, rows: slice, alpha):
    """``variant``'s reward fit on ``rows`` of a simulation, from the confounder as recorded (the instrumented
    variant with the second record as its instrument)."""
    instruments = sim.instrument[rows] if variant == "instrumented" else None
    return fit_text_reward(
        x, sim.outcome[rows], sim.observed[rows], variant, alpha=alpha, instruments=instruments
    )


def sweep(train, test, x_train, x_test, seeds, alpha, settings) -> dict:
    """Held-out correlation with f* of each variant, for each (strength, recording error) in ``settings``, keyed
    by the one that varies (every seed's, in seed order)."""
    texts = train["text"] + test["text"]
    n = len(train["text"])
    results: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    for key, strength, error in settings:
        for seed in seeds:
            sim = simulate(texts, strength, confounder_noise=error, seed=seed)
            for variant in VARIANTS:
                h = fit_variant(variant, x_train, sim, slice(0, n), alpha)
                corr = float(np.corrcoef(h(x_test), sim.effect[n:])[0, 1])
                results[variant].setdefault(str(key), []).append(corr)
    return results


def confounder_slopes(train, strength: float, seeds, errors) -> dict:
    """The confounder's effect on the outcome as least squares and as two-stage least squares (the second record
    as the instrument) estimate it from the training tweets, by recording error (mean over seeds); the true one is
    ``strength``."""
    out = {}
    for error in errors:
        ols, iv = [], []
        for seed in seeds:
            sim = simulate(train["text"], strength, confounder_noise=error, seed=seed)
            ols.append(float(np.polyfit(sim.observed, sim.outcome, 1)[0]))
            iv.append(float(two_stage_least_squares(sim.outcome, sim.observed, sim.instrument)[1]))
        out[str(error)] = {"least_squares": float(np.mean(ols)), "two_stage": float(np.mean(iv))}
    return out


def plot(results: dict, noisy_strength: float, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = (
        (results["sweep"], "confounding strength (confounder recorded exactly)"),
        (results["noisy"], f"error the confounder is recorded with (strength {noisy_strength:g})"),
    )
    for ax, (table, xlabel) in zip(axes, panels, strict=True):
        for variant, by_key in table.items():
            ax.plot(
                [float(k) for k in by_key], [np.mean(v) for v in by_key.values()], marker="o", label=variant
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("correlation of the learned reward with f* (held out)")
    axes[0].legend()
    fig.suptitle("DeconfoundLM on trump_tweets embeddings")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def real_outcomes(train, test, x_train, x_test, alpha) -> dict:
    def confounders(rows, devices):
        year = np.array(rows["year"]) - 2013
        return np.column_stack([year, year**2, np.array(rows["hour"]), one_hot(rows["device"], devices)])

    devices = sorted(set(train["device"]))
    y_train = np.log1p(np.array(train["retweets"], dtype=float))
    y_test = np.log1p(np.array(test["retweets"], dtype=float))
    features = text_features(test["text"])
    out = {}
    for variant in ("naive", "joint"):
        h = fit_text_reward(x_train, y_train, confounders(train, devices), variant, alpha=alpha)
        scores = h(x_test)
        out[variant] = {
            "corr_with_outcome": float(np.corrcoef(scores, y_test)[0, 1]),
            "corr_with_year": float(np.corrcoef(scores, np.array(test["year"]))[0, 1]),
            "credits": {
                name: float(np.corrcoef(scores, values)[0, 1]) if values.std() > 0 else None
                for name, values in features.items()
            },
        }
    return out


def embeddings(path: Path, model: str, train, test) -> tuple[np.ndarray, np.ndarray]:
    """The tweets' embeddings, read back from ``path`` when they were made for the same model and tweets."""
    key = {"model": model, "train": train["id"], "test": test["id"]}
    if path.exists():
        saved = np.load(path, allow_pickle=False)
        if json.loads(str(saved["key"])) == key:
            logger.info("embeddings: read back from %s", path)
            return saved["train"], saved["test"]
    x_train, x_test = embed_texts(model, train["text"]), embed_texts(model, test["text"])
    np.savez(path, train=x_train, test=x_test, key=json.dumps(key))
    return x_train, x_test


def fit_aligned_rewards(train, test, x_train, x_test, args) -> dict:
    """The naive and joint rewards at --align-strength (seed 0), saved where the alignment recipes read them;
    their held-out correlation with f*."""
    texts = train["text"] + test["text"]
    n = len(train["text"])
    sim = simulate(texts, args.align_strength, seed=0)
    out = {}
    for variant in ALIGNED:
        h = fit_variant(variant, x_train, sim, slice(0, n), args.alpha)
        save_text_reward(
            args.out / "rewards" / variant, args.model, 128, h.mean, h.scale, h.weights, variant=variant
        )
        out[variant] = float(np.corrcoef(h(x_test), sim.effect[n:])[0, 1])
    # The same outcomes for h as an LM regression head (method reward_model; docs/deconfound.md).
    write_head_dataset(args.out / "head-residualised.jsonl", train["text"], sim.outcome[:n], sim.observed[:n])
    return out


def describe(texts: list[str], effect: Effect) -> dict:
    """Mean f* of ``texts`` (with its standard error) and of the features it and the confounder are made of."""
    scores = effect(texts)
    features = text_features(texts)
    return {
        "samples": len(texts),
        "f_star": float(scores.mean()),
        "f_star_se": float(scores.std(ddof=1) / np.sqrt(len(scores))),
        **{name: float(features[name].mean()) for name in (*EFFECT_FEATURES, *CONFOUNDER_FEATURES)},
    }


def align(train, test, x_train, x_test, args) -> dict:
    """Phase 4: best-of-n SFT with the naive and the joint rewards, the held-out rewrites of the base model and
    both policies, and the true f* of what each writes."""
    phases = Phases(args.out / "phases.json")
    results = {"reward_corr_with_f_star": fit_aligned_rewards(train, test, x_train, x_test, args)}
    effect = Effect.fit(train["text"] + test["text"])  # f* on the scale of the simulation's corpus
    recipes = REPO / "recipes" / "deconfound"
    models = [{"model": args.model, "label": "base"}]
    results["chosen"] = {}
    for variant in ALIGNED:
        policy = args.out / f"best_of_n-{variant}"
        reward = {"name": "text_reward", "kwargs": {"path": str(args.out / "rewards" / variant)}}
        argv = [str(recipes / f"best_of_n_{variant}_cpu.yaml"), "--output_dir", str(policy)]
        argv += ["--selection_reward", json.dumps(reward), "--max_train_samples", str(args.align_prompts)]
        argv += ["--model_name_or_path", args.model]
        log = args.out / "logs" / f"best_of_n-{variant}.log"
        # The stage alone first: what best-of-n picks is measured even where the SFT is not run.
        phases.run(f"best-of-n stage, {variant} reward", ["stage", *argv], log)
        stage = [json.loads(line) for line in (policy / "stages" / "best_of_n" / "train.jsonl").open()]
        results["chosen"][variant] = {
            "targets": describe([r["completion"][0]["content"] for r in stage], effect),
            "candidates": describe([c for r in stage for c in r["candidates"]], effect),
        }
        if not args.selection_only:
            phases.run(f"best-of-n SFT, {variant} reward", ["train", *argv], log)
            models.append({"model": args.model, "adapter": str(policy), "label": f"aligned-{variant}"})
    results["phases"] = phases.records
    if args.selection_only:
        return results
    config = yaml.safe_load((REPO / "recipes" / "eval" / "deconfound_rewrite.yaml").read_text())
    config.pop("model_name_or_path")
    config.update(
        models=models,
        max_samples=args.heldout_prompts,
        output_dir=str(args.out / "eval"),
        scorers=[{"name": "text_reward", "kwargs": {"path": str(args.out / "rewards" / v)}} for v in ALIGNED],
    )
    eval_config = args.out / "eval.yaml"
    eval_config.write_text(yaml.safe_dump(config))
    phases.run("held-out rewrites", ["eval", str(eval_config)], args.out / "logs" / "eval.log")
    results["policies"] = {}
    for model in models:
        rows = [json.loads(line) for line in (args.out / "eval" / model["label"] / "samples.jsonl").open()]
        texts = [t for row in rows for t in row["completions"]]
        scores = {name: float(np.mean([x for r in rows for x in v])) for name, v in _scores(rows).items()}
        results["policies"][model["label"]] = {**describe(texts, effect), "rewards": scores}
    return results


def _scores(rows: list[dict]) -> dict[str, list[list[float]]]:
    names = rows[0]["scores"] if rows else {}
    return {name: [r["scores"][name] for r in rows] for name in names}


def alignment_table(results: dict) -> str:
    lines = [
        f"{'policy':<16}{'f* (se)':>16}{'naive reward':>14}{'joint reward':>14}  mean !, capitals, links"
    ]
    for label, row in results.get("policies", {}).items():
        rewards = list(row["rewards"].values())
        lines.append(
            f"{label:<16}{row['f_star']:>9.3f} ({row['f_star_se']:.3f}){rewards[0]:>14.3f}{rewards[1]:>14.3f}  "
            f"{row['exclamations']:.2f}, {row['capital_share']:.3f}, {row['has_link']:.2f}"
        )
    lines.append(
        "best-of-n targets against all candidates: f* (se); mean !, capitals, words, links, mentions"
    )
    for variant, row in results["chosen"].items():
        for kind in ("targets", "candidates"):
            r = row[kind]
            lines.append(
                f"  {variant:<6} {kind:<11}{r['f_star']:>7.3f} ({r['f_star_se']:.3f}); {r['exclamations']:.2f}, "
                f"{r['capital_share']:.3f}, {np.expm1(r['log_words']):.1f}, {r['has_link']:.2f}, {r['mentions']:.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=800, help="training tweets (original ones)")
    parser.add_argument("--test", type=int, default=400, help="held-out tweets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge penalty per standardised dimension")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "deconfound_bench")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "deconfound_sweep.png")
    parser.add_argument(
        "--noisy-strength", type=float, default=2.0, help="confounding strength of the recording-error sweep"
    )
    parser.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run phase 4: align the model with the naive and the joint rewards (--no-align: phases 1-3 only)",
    )
    parser.add_argument("--align-strength", type=float, default=4.0, help="confounding strength of phase 4")
    parser.add_argument(
        "--align-prompts", type=int, default=64, help="training prompts of each best-of-n run"
    )
    parser.add_argument(
        "--heldout-prompts", type=int, default=64, help="held-out tweets each policy rewrites"
    )
    parser.add_argument(
        "--selection-only",
        action="store_true",
        help="in phase 4, stop after the best-of-n stages (what each reward picks), before SFT and the policies",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    tweets = load_registered("trump_tweets")
    # Original tweets only: a retweet's text and counts are someone else's.
    train = tweets["train"].filter(lambda r: not r["is_retweet"]).shuffle(seed=0).select(range(args.train))
    test = tweets["test"].filter(lambda r: not r["is_retweet"]).shuffle(seed=0).select(range(args.test))
    train, test = train.to_dict(), test.to_dict()
    x_train, x_test = timed("embedding", embeddings, args.out / "embeddings.npz", args.model, train, test)
    by_strength = [(s, s, 0.0) for s in STRENGTHS]
    by_error = [(e, args.noisy_strength, e) for e in RECORDING_ERRORS]
    results = {
        "sweep": timed(
            "strength sweep", sweep, train, test, x_train, x_test, args.seeds, args.alpha, by_strength
        ),
        "noisy": timed(
            "recording-error sweep", sweep, train, test, x_train, x_test, args.seeds, args.alpha, by_error
        ),
    }
    results["slopes"] = confounder_slopes(train, args.noisy_strength, args.seeds, RECORDING_ERRORS)
    plot(results, args.noisy_strength, args.plot)
    results["real"] = timed("real outcomes", real_outcomes, train, test, x_train, x_test, args.alpha)
    if args.align:
        results["align"] = timed("alignment", align, train, test, x_train, x_test, args)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    for key, title, keys in (
        ("sweep", "by confounding strength", STRENGTHS),
        ("noisy", f"by recording error, strength {args.noisy_strength:g}", RECORDING_ERRORS),
    ):
        lines = ["variant       " + "".join(f"{k:>8}" for k in keys)]
        for variant, by_key in results[key].items():
            lines.append(f"{variant:<14}" + "".join(f"{np.mean(v):>8.3f}" for v in by_key.values()))
        print(f"held-out correlation with f*, {title}, mean of {len(args.seeds)} seeds:\n" + "\n".join(lines))
    lines = [f"{'estimate':<16}" + "".join(f"{k:>8}" for k in RECORDING_ERRORS)]
    for name in ("least_squares", "two_stage"):
        lines.append(f"{name:<16}" + "".join(f"{v[name]:>8.3f}" for v in results["slopes"].values()))
    print(f"the confounder's effect (true {args.noisy_strength:g}) by recording error:\n" + "\n".join(lines))
    print("real outcomes:\n" + json.dumps(results["real"], indent=2))
    if args.align:
        print(f"alignment at strength {args.align_strength:g}:\n" + alignment_table(results["align"]))


if __name__ == "__main__":
    main()
