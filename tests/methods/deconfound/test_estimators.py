"""DeconfoundLM's estimators against hand-computed fits, and on semi-synthetic outcomes over real tweets: the naive
reward loses the true effect as confounding grows, the deconfounded variants keep it."""

from __future__ import annotations

import numpy as np
import pytest

from posttrain.methods.deconfound.estimators import (
    VARIANTS,
    fit_text_reward,
    one_hot,
    two_stage_least_squares,
)
from posttrain.methods.deconfound.simulate import Effect, simulate, text_features


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


def test_two_stage_least_squares_recovers_the_effect_that_least_squares_misses():
    # The textbook case: u is unobserved and moves both x and y, so least squares of y on x is biased; z moves x
    # and touches y only through it. y = 1 + 2x + 3u + e, x = z + u + v: the OLS slope tends to
    # 2 + 3 cov(x, u) / var(x) = 2 + 3 / 3 = 3, the 2SLS slope to 2.
    rng = np.random.default_rng(0)
    n = 20_000
    z, u, v, e = rng.normal(size=(4, n))
    x = z + u + v
    y = 1.0 + 2.0 * x + 3.0 * u + e
    ols = np.polyfit(x, y, 1)[0]
    intercept, slope = two_stage_least_squares(y, x, z)
    assert ols == pytest.approx(3.0, abs=0.05)
    assert slope == pytest.approx(2.0, abs=0.05)
    assert intercept == pytest.approx(1.0, abs=0.05)


def test_two_stage_least_squares_gives_linearmodels_coefficients_in_its_order():
    import pandas as pd
    from linearmodels.iv import IV2SLS

    rng = np.random.default_rng(1)
    n = 500
    w = rng.normal(size=(n, 2))
    z = rng.normal(size=(n, 3))
    u = rng.normal(size=n)
    x = np.column_stack([z[:, 0] + z[:, 2] + u, z[:, 1] - u + w[:, 0]]) + rng.normal(size=(n, 2))
    y = 0.5 + w @ [1.0, -1.0] + x @ [2.0, 0.3] + u + rng.normal(size=n)
    ours = two_stage_least_squares(y, x, z, exogenous=w)
    exog = pd.DataFrame({"const": np.ones(n), "w0": w[:, 0], "w1": w[:, 1]})
    endog = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1]})
    theirs = IV2SLS(pd.Series(y, name="y"), exog, endog, pd.DataFrame(z, columns=["z0", "z1", "z2"])).fit()
    assert ours == pytest.approx(theirs.params[["const", "w0", "w1", "x0", "x1"]].to_numpy(), rel=1e-10)


def test_too_few_instruments_are_refused():
    with pytest.raises(ValueError, match="at least one instrument per endogenous column"):
        two_stage_least_squares(np.ones(5), np.ones((5, 2)), np.ones(5))


def test_instrumenting_a_noisily_recorded_confounder_removes_it_where_least_squares_does_not():
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.normal(size=(n, 3))
    c = rng.normal(size=n) + x[:, 2]  # the confounder correlates with the third feature
    y = x[:, 0] + 4.0 * c
    observed, second_record = c + rng.normal(size=(2, n))  # recorded twice, each with independent error
    residualised = fit_text_reward(x, y, observed, "residualised", alpha=0.0)
    instrumented = fit_text_reward(x, y, observed, "instrumented", alpha=0.0, instruments=second_record)
    # Least squares attenuates the confounder's effect (slope 4 var(c) / (var(c) + 1) = 8/3, var(c) = 2), so
    # 4 - 8/3 = 4/3 of it stays in the outcome and the third feature is credited for it.
    assert (residualised.weights / residualised.scale)[2] == pytest.approx(4 / 3, abs=0.1)
    assert instrumented.weights / instrumented.scale == pytest.approx([1.0, 0.0, 0.0], abs=0.1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bad_input_is_refused(variant):
    x = np.ones((3, 2))
    z = np.ones(3) if variant == "instrumented" else None
    with pytest.raises(ValueError, match="one row per outcome"):
        fit_text_reward(x, np.ones(4), np.ones(4), variant, instruments=z)
    if variant != "naive":
        with pytest.raises(ValueError, match="needs the confounders"):
            fit_text_reward(x, np.ones(3), None, variant, instruments=z)
    with pytest.raises(ValueError, match="variant must be"):
        fit_text_reward(x, np.ones(3), None, "causal")
    if variant == "instrumented":
        with pytest.raises(ValueError, match="needs instruments"):
            fit_text_reward(x, np.ones(3), np.ones(3), variant)
        with pytest.raises(ValueError, match="instruments need one row per outcome"):
            fit_text_reward(x, np.ones(3), np.ones(3), variant, instruments=np.ones(4))
    else:
        with pytest.raises(ValueError, match="used by variant 'instrumented' only"):
            fit_text_reward(x, np.ones(3), np.ones(3), variant, instruments=np.ones(3))


def test_a_recording_error_changes_the_record_not_the_outcome():
    texts = ["Big news!!", "see http://x.co @joe", "a quiet day", "VOTE #now 2020", "ok"] * 40
    exact = simulate(texts, 2.0, seed=3)
    noisy = simulate(texts, 2.0, confounder_noise=0.5, seed=3)
    assert np.array_equal(exact.outcome, noisy.outcome) and np.array_equal(exact.observed, exact.confounder)
    assert np.std(noisy.observed - noisy.confounder) == pytest.approx(0.5, rel=0.15)
    assert np.corrcoef(noisy.observed - noisy.confounder, noisy.instrument - noisy.confounder)[0, 1] < 0.2
    with pytest.raises(ValueError, match="confounder_noise must be >= 0"):
        simulate(texts, 1.0, confounder_noise=-1.0)


def test_the_effect_scores_new_texts_on_the_corpus_scale():
    corpus = ["Great!!", "a long and calm sentence about many things", "WOW", "hello there"]
    effect = Effect.fit(corpus)
    assert effect(corpus) == pytest.approx(simulate(corpus, 0.0).effect)
    # f* rewards exclamation marks: one more on the same words scores higher; scoring one text alone is the same.
    assert effect(["hello there!"])[0] > effect(["hello there"])[0]
    assert effect(["WOW", "x"])[0] == pytest.approx(effect(["WOW"])[0])


def test_naive_reward_degrades_with_confounding_and_deconfounded_ones_do_not(offline_cache):
    from posttrain.data import load_registered

    texts = load_registered("trump_tweets")["train"]["text"]
    features = np.column_stack(list(text_features(texts).values()))
    corr = {}
    for strength in (0.0, 3.0):
        sim = simulate(texts, strength, seed=0)
        for variant in VARIANTS:
            z = sim.instrument if variant == "instrumented" else None
            h = fit_text_reward(features, sim.outcome, sim.observed, variant, alpha=0.01, instruments=z)
            corr[variant, strength] = np.corrcoef(h(features), sim.effect)[0, 1]
    assert corr["naive", 0.0] > 0.95 and corr["naive", 3.0] < 0.8
    for variant in ("inputs", "residualised", "joint", "instrumented"):
        assert corr[variant, 3.0] > 0.95, (variant, corr)
