"""DeconfoundLM's estimators against hand-computed fits, and on semi-synthetic outcomes over real tweets: the naive
reward loses the true effect as confounding grows, the deconfounded variants keep it."""

from __future__ import annotations

import numpy as np
import pytest

from posttrain.methods.deconfound.estimators import VARIANTS, fit_text_reward, one_hot
from posttrain.methods.deconfound.simulate import simulate, text_features


def test_one_feature_without_penalty_is_the_least_squares_slope():
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = np.array([1.0, 3.0, 2.0, 6.0])
    h = fit_text_reward(x, y, None, "naive", alpha=0.0)
    # OLS slope on raw x: sum((x - 2.5)(y - 3)) / sum((x - 2.5)^2) = 7 / 5 (hand-computed).
    assert h.weights[0] / h.scale[0] == pytest.approx(1.4)
    assert h(np.array([[3.0]])) - h(np.array([[1.0]])) == pytest.approx(2.8)


def test_residualising_removes_an_observed_confounder_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    c = rng.normal(size=200) + x[:, 2]  # the confounder correlates with the third feature
    y = x[:, 0] + 4.0 * c
    naive = fit_text_reward(x, y, c, "naive", alpha=0.0)
    joint = fit_text_reward(x, y, c, "joint", alpha=0.0)
    assert abs(naive.weights[2]) > 1.0  # credits the feature that predicts the confounder
    assert joint.weights / joint.scale == pytest.approx([1.0, 0.0, 0.0], abs=1e-9)


def test_fixed_effects():
    # Sorted categories android, iphone, web: android is the baseline, the columns are iphone and web.
    assert one_hot(["web", "iphone", "android", "web"]).tolist() == [[0, 1], [1, 0], [0, 0], [0, 1]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_bad_input_is_refused(variant):
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="one row per outcome"):
        fit_text_reward(x, np.ones(4), np.ones(4), variant)
    if variant != "naive":
        with pytest.raises(ValueError, match="needs the confounders"):
            fit_text_reward(x, np.ones(3), None, variant)
    with pytest.raises(ValueError, match="variant must be"):
        fit_text_reward(x, np.ones(3), None, "causal")


def test_naive_reward_degrades_with_confounding_and_deconfounded_ones_do_not(offline_cache):
    from posttrain.data import load_registered

    texts = load_registered("trump_tweets")["train"]["text"]
    features = np.column_stack(list(text_features(texts).values()))
    corr = {}
    for strength in (0.0, 3.0):
        sim = simulate(texts, strength, seed=0)
        for variant in VARIANTS:
            h = fit_text_reward(features, sim.outcome, sim.confounder, variant, alpha=0.01)
            corr[variant, strength] = np.corrcoef(h(features), sim.effect)[0, 1]
    assert corr["naive", 0.0] > 0.95 and corr["naive", 3.0] < 0.8
    for variant in ("inputs", "residualised", "joint"):
        assert corr[variant, 3.0] > 0.95, (variant, corr)
