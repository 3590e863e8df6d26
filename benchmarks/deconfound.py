"""DeconfoundLM's reward estimators on real tweets: how well each variant's learned reward tracks the true effect
of the text as confounding grows, and what each credits on the real outcomes.

    python benchmarks/deconfound.py [--train 3000 --test 1000 --seeds 0 1]

1. Embedding: trump_tweets' texts through the embedded model (mean of the last hidden states, frozen).
2. Semi-synthetic sweep: for each confounding strength and seed, outcomes = f*(text) + strength x confounder +
   noise (posttrain.methods.deconfound.simulate), each variant fit on the training tweets' embeddings, and the
   correlation of its reward with f* on the held-out tweets. Plot: correlation against strength, one line per
   variant (docs/deconfound_sweep.png).
3. Real outcomes: log(1 + retweets), with posting time (year, year^2, UTC hour) and device as confounders; for the
   naive and the joint reward, the held-out correlation of the reward with the outcome and with each interpretable
   text feature (what it credits).

Each phase prints its wall time and the process's peak resident memory.
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

from posttrain.data import load_registered  # noqa: E402
from posttrain.methods.deconfound.estimators import VARIANTS, fit_text_reward, one_hot  # noqa: E402
from posttrain.methods.deconfound.simulate import simulate, text_features  # noqa: E402
from rewards.text_reward import embed_texts  # noqa: E402

logger = logging.getLogger("benchmark")
REPO = Path(__file__).resolve().parent.parent
STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(name: str, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    logger.info("phase %s: %.1f s, peak %.0f MB", name, time.perf_counter() - start, peak_mb())
    return result


def sweep(train, test, x_train, x_test, seeds, alpha) -> dict:
    """Held-out correlation with f* of each variant, by strength (mean over seeds, and each seed)."""
    texts = train["text"] + test["text"]
    results: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    for strength in STRENGTHS:
        for seed in seeds:
            sim = simulate(texts, strength, seed=seed)
            n = len(train["text"])
            for variant in VARIANTS:
                h = fit_text_reward(x_train, sim.outcome[:n], sim.confounder[:n], variant, alpha=alpha)
                corr = float(np.corrcoef(h(x_test), sim.effect[n:])[0, 1])
                results[variant].setdefault(str(strength), []).append(corr)
    return results


def plot(results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, by_strength in results.items():
        strengths = [float(s) for s in by_strength]
        ax.plot(strengths, [np.mean(v) for v in by_strength.values()], marker="o", label=variant)
    ax.set_xlabel("confounding strength")
    ax.set_ylabel("correlation of the learned reward with f* (held out)")
    ax.set_title("DeconfoundLM on trump_tweets embeddings")
    ax.legend()
    ax.grid(alpha=0.3)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge penalty per standardised dimension")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "deconfound_bench")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "deconfound_sweep.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    tweets = load_registered("trump_tweets")
    # Original tweets only: a retweet's text and counts are someone else's.
    train = tweets["train"].filter(lambda r: not r["is_retweet"]).shuffle(seed=0).select(range(args.train))
    test = tweets["test"].filter(lambda r: not r["is_retweet"]).shuffle(seed=0).select(range(args.test))
    train, test = train.to_dict(), test.to_dict()
    x_train, x_test = timed(
        "embedding", lambda: (embed_texts(args.model, train["text"]), embed_texts(args.model, test["text"]))
    )
    results = {
        "sweep": timed("semi-synthetic sweep", sweep, train, test, x_train, x_test, args.seeds, args.alpha)
    }
    plot(results["sweep"], args.plot)
    results["real"] = timed("real outcomes", real_outcomes, train, test, x_train, x_test, args.alpha)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["variant       " + "".join(f"{s:>8}" for s in STRENGTHS)]
    for variant, by_strength in results["sweep"].items():
        lines.append(f"{variant:<14}" + "".join(f"{np.mean(v):>8.3f}" for v in by_strength.values()))
    logger.info("held-out correlation with f*, mean of %d seeds:\n%s", len(args.seeds), "\n".join(lines))
    logger.info("real outcomes:\n%s", json.dumps(results["real"], indent=2))


if __name__ == "__main__":
    main()
