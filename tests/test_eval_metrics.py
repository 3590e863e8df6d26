"""Evaluation metrics: sample metrics, calibration and the plots, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from eval.calibration import (
    auroc,
    brier_score,
    calibration_summary,
    ece_from_bins,
    expected_calibration_error,
    parse_confidence,
    reliability_bins,
)
from eval.metrics import aggregate, majority_at_k, mean_at_k, pass_at_k, sample_metrics, vote_answer
from eval.plots import comparison_plot, reliability_diagram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# -- pass@k -------------------------------------------------------------------------------------


def test_pass_at_k_hand_computed_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c / n
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)  # 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert pass_at_k(1, 1, 1) == 1.0


def test_pass_at_k_edge_cases():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(5, 3, 3) == 1.0  # only 2 wrong samples: any 3 drawn include a correct one


def test_pass_at_k_matches_the_binomial_formula():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"k=6.*n=5"):
        pass_at_k(5, 2, 6)
    with pytest.raises(ValueError, match="k >= 1"):
        pass_at_k(5, 2, 0)
    with pytest.raises(ValueError, match="c=6"):
        pass_at_k(5, 6, 1)


# -- mean@k, maj@k ------------------------------------------------------------------------------


def test_mean_at_k_leaves_out_unscored_samples():
    assert mean_at_k([1.0, None, 0.0, 0.5]) == pytest.approx(0.5)
    assert math.isnan(mean_at_k([None, None]))
    assert math.isnan(mean_at_k([]))


def test_majority_tie_goes_to_the_first_answer():
    # "a" and "b" both appear twice; "a" comes first, so it is the majority answer.
    assert majority_at_k(["a", "b", "b", "a"], [False, True, True, False]) == 0.0
    assert majority_at_k(["a", "b", "b", "a"], [False, True, True, True]) == 1.0


def test_majority_ignores_missing_answers():
    # Two unparsed samples (even correct ones) do not outvote the two "d"s.
    assert majority_at_k([None, None, "c", "d", "d"], [True, True, True, False, True]) == 1.0
    assert majority_at_k([None, None, "c", "d", "d"], [True, True, True, False, False]) == 0.0
    assert majority_at_k([None, None], [True, True]) == 0.0
    assert majority_at_k([], []) == 0.0


def test_majority_with_scores_uses_the_threshold():
    assert majority_at_k(["x", "x"], [0.4, 0.6]) == 1.0
    assert majority_at_k(["x", "x"], [0.4, 0.3]) == 0.0
    assert majority_at_k(["x", "x"], [0.4, 0.6], threshold=0.7) == 0.0
    assert majority_at_k(["x"], [None]) == 0.0
    with pytest.raises(ValueError, match="length"):
        majority_at_k(["x", "y"], [True])


# -- sample_metrics, aggregate ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "same", "other"),
    [
        (
            "text",
            ["Paris", "Paris.", " paris\n", "The Paris", "Paris\nConfidence: 90%", "Paris\nConfidence: 80%"],
            "Lyon",
        ),
        ("text", ["Paris\n**Confidence (0-100):** 90", "Paris. Confidence score: 7/10"], "Paris, France"),
        (
            "number",
            ["42", "#### 42", "42\nConfidence: 90%", "42.0\nConfidence: 80%", "$42.", "42 Confidence: 4/5"],
            "90",
        ),
        ("number", ["12.50", "12.5", "1,2.5"], "125"),
    ],
)
def test_vote_answers_agree_where_the_scorer_does(parser, same, other):
    keys = {vote_answer(text, parser) for text in same}
    assert len(keys) == 1 and None not in keys
    assert vote_answer(other, parser) not in keys


def test_vote_answer_without_an_answer():
    assert vote_answer("Confidence: 90%", "text") is None
    assert vote_answer("no number. Confidence: 90%", "number") is None
    assert vote_answer("Paris", "none") is None


def test_majority_of_confident_answers_votes_on_the_answer():
    """Four samples: "Paris" three times with different confidences and a period, "Lyon" once (correct)."""
    texts = ["Paris\nConfidence: 90%", "Lyon\nConfidence: 50%", "Paris.\nConfidence: 80%", "paris"]
    answers = [vote_answer(t, "text") for t in texts]
    assert majority_at_k(answers, [1.0, 0.0, 1.0, 1.0]) == 1.0
    assert majority_at_k(answers, [0.0, 1.0, 0.0, 0.0]) == 0.0  # Lyon's one vote loses


def test_sample_metrics_for_one_prompt():
    # n=4, two correct (the None score counts as wrong).
    metrics = sample_metrics([1.0, 0.0, None, 1.0], ["4", "5", None, "4"], ks=[1, 2])
    assert metrics == pytest.approx(
        {
            "pass@1": 0.5,
            "pass@2": 5 / 6,  # 1 - C(2,2)/C(4,2)
            "mean@4": 2 / 3,
            "maj@4": 1.0,
        }
    )


def test_sample_metrics_threshold():
    assert sample_metrics([0.5, 0.4], ["a", "b"], ks=[1])["pass@1"] == 0.5  # 0.5 counts as correct
    strict = sample_metrics([0.5, 0.4], ["a", "b"], ks=[1], threshold=0.6)
    assert strict["pass@1"] == 0.0
    assert strict["maj@2"] == 0.0
    assert strict["mean@2"] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="k=3"):
        sample_metrics([1.0, 0.0], ["a", "b"], ks=[3])


def test_aggregate_averages_over_prompts():
    summary = aggregate(
        [
            {"id": "a", "pass@1": 1.0, "mean@2": float("nan"), "maj@2": 1.0},
            {"id": "b", "pass@1": 0.0, "mean@2": 0.5, "maj@2": 0.0},
            {"id": "c", "pass@1": 0.5, "mean@2": 0.25, "maj@2": 1.0},
        ]
    )
    assert summary == pytest.approx({"pass@1": 0.5, "mean@2": 0.375, "maj@2": 2 / 3, "prompts": 3})
    assert list(summary) == ["pass@1", "mean@2", "maj@2", "prompts"]
    assert aggregate([]) == {"prompts": 0}


# -- calibration --------------------------------------------------------------------------------

# Six samples in three of ten bins, two per bin:
#   bin 0 [0.0, 0.1): p = 0.0 (wrong), 0.05 (right) -> acc 0.5, conf 0.025, gap 0.475
#   bin 3 [0.3, 0.4): p = 0.3 (right), 0.35 (wrong) -> acc 0.5, conf 0.325, gap 0.175
#   bin 9 [0.9, 1.0]: p = 0.9 (right), 1.0 (wrong)  -> acc 0.5, conf 0.95,  gap 0.450
# ECE = 2/6 * (0.475 + 0.175 + 0.450) = 1.1 / 3
CONF = [0.0, 0.05, 0.3, 0.35, 0.9, 1.0]
CORRECT = [0, 1, 1, 0, 1, 0]


def test_ece_hand_computed():
    assert expected_calibration_error(CONF, CORRECT) == pytest.approx(1.1 / 3)
    # Two bins: [0, 0.5) holds 0.2 (wrong), gap 0.2; [0.5, 1] holds 0.5 and 0.8 (both right), gap 0.35.
    # ECE = 1/3 * 0.2 + 2/3 * 0.35 = 0.3
    assert expected_calibration_error([0.2, 0.5, 0.8], [0, 1, 1], n_bins=2) == pytest.approx(0.3)


def test_ece_perfect_and_empty():
    assert expected_calibration_error([1.0, 1.0, 0.0], [True, True, False]) == 0.0
    assert math.isnan(expected_calibration_error([], []))


def test_reliability_bins_edges():
    bins = reliability_bins(CONF, CORRECT)
    assert len(bins) == 10
    assert [b["count"] for b in bins] == [2, 0, 0, 2, 0, 0, 0, 0, 0, 2]
    assert bins[3]["lo"] == pytest.approx(0.3)  # 0.3 opens bin 3, not closes bin 2
    assert bins[9] == pytest.approx(
        {"lo": 0.9, "hi": 1.0, "count": 2, "mean_confidence": 0.95, "accuracy": 0.5}
    )
    assert bins[1]["mean_confidence"] is None and bins[1]["accuracy"] is None
    assert ece_from_bins(bins) == pytest.approx(1.1 / 3)


def _bin_of(p: float, n_bins: int) -> int:
    (index,) = [i for i, b in enumerate(reliability_bins([p], [1], n_bins)) if b["count"]]
    return index


@pytest.mark.parametrize("n_bins", [10, 3, 7, 20])
def test_bin_edges_are_exact(n_bins):
    """Bin i is [i / n_bins, (i + 1) / n_bins), the edges being those floats; the last bin is closed at 1."""
    for i in range(1, n_bins):
        edge = i / n_bins
        assert _bin_of(edge, n_bins) == i
        assert _bin_of(math.nextafter(edge, 0.0), n_bins) == i - 1
        assert _bin_of(math.nextafter(edge, 1.0), n_bins) == i
    assert _bin_of(0.0, n_bins) == 0
    assert _bin_of(1.0, n_bins) == _bin_of(math.nextafter(1.0, 0.0), n_bins) == n_bins - 1


def test_the_float_below_0_9_is_in_bin_8():
    below = math.nextafter(0.9, 0.0)
    assert below * 10 == 9.0  # why flooring p * 10 put it in bin 9
    assert _bin_of(below, 10) == 8
    assert _bin_of(0.9, 10) == 9 and _bin_of(0.8, 10) == 8


def test_brier_score():
    # (1-1)^2 + (0-1)^2 + (0.5-0)^2 + (0.8-1)^2 = 0 + 1 + 0.25 + 0.04 = 1.29, over 4 samples
    assert brier_score([1.0, 0.0, 0.5, 0.8], [1, 1, 0, 1]) == pytest.approx(0.3225)
    assert math.isnan(brier_score([], []))


def test_auroc_counts_ties_as_half():
    # Right: 0.9, 0.7. Wrong: 0.7, 0.4, 0.7. Of the 6 (right, wrong) pairs, 0.9 beats all three (3),
    # 0.7 beats 0.4 (1) and ties both 0.7s (2 * 1/2): (3 + 1 + 1) / 6.
    assert auroc([0.9, 0.7, 0.7, 0.4, 0.7], [1, 1, 0, 0, 0]) == pytest.approx(5 / 6)
    assert auroc([0.6, 0.6, 0.6], [1, 0, 1]) == pytest.approx(0.5)
    assert auroc([0.9, 0.8, 0.2], [1, 1, 0]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [1, 0, 0]) == 0.0


def test_auroc_single_class_is_nan():
    assert math.isnan(auroc([0.2, 0.9], [1, 1]))
    assert math.isnan(auroc([0.2, 0.9], [False, False]))
    assert math.isnan(auroc([], []))


def test_calibration_inputs_are_checked():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([85.0], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([None, 0.5], [1, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        auroc([0.5], [0.5])
    with pytest.raises(ValueError, match="length"):
        reliability_bins([0.5, 0.6], [1])


def test_calibration_summary():
    summary = calibration_summary(CONF, CORRECT)
    assert summary == pytest.approx(
        {
            "ece": 1.1 / 3,
            "brier": (0.0 + 0.9025 + 0.49 + 0.1225 + 0.01 + 1.0) / 6,
            # right 0.05, 0.3, 0.9 against wrong 0.0, 0.35, 1.0: each beats 0.0, only 0.9 beats 0.35
            "auroc": 4 / 9,
            "n": 6,
            "mean_confidence": 2.6 / 6,
            "accuracy": 0.5,
        }
    )


# -- parse_confidence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is Paris.\nConfidence: 85%", 0.85),
        ("confidence: 0.3", 0.3),
        ("Confidence: 85 %", 0.85),
        ("Confidence: 85", 0.85),
        ("Confidence: 85 percent", 0.85),
        ("CONFIDENCE LEVEL: 40", 0.4),
        ("Confidence score: 85%", 0.85),
        ("Confidence rating: 0.6", 0.6),
        ("**Confidence:** 90%", 0.9),
        ("**Confidence**: 90%.", 0.9),
        ("Confidence: .5", 0.5),
        ("Confidence: 1", 1.0),
        ("Confidence: 1.0", 1.0),
        ("Confidence: 0", 0.0),
        ("Confidence: 100%", 1.0),
        ("Confidence: 85. I am fairly sure.", 0.85),
        ("Confidence: 20%\nOn reflection...\nConfidence: 70%", 0.7),
        # Fractions are read as fractions, not as percentages.
        ("Confidence: 9/10", 0.9),
        ("Confidence: 4/5", 0.8),
        ("Confidence: 3 / 4", 0.75),
        ("Confidence: 7 out of 10", 0.7),
        ("Confidence: 0/3", 0.0),
        # A stated scale decides what a bare number means.
        ("Confidence (0-100): 85", 0.85),
        ("Confidence (0-100): 1", 0.01),
        ("Confidence (0 to 10): 7", 0.7),
        ("Confidence (0-1): 0.85", 0.85),
        ("Confidence (%): 85", 0.85),
        ("Confidence score (0-100): 85%", 0.85),
        # Decimal comma and the Arabic decimal separator (U+066B), Arabic-Indic digits and percent sign.
        ("Confidence: 0,85", 0.85),
        ("Confidence: 85,5%", 0.855),
        ("Confidence: 0\u066b85", 0.85),
        ("Confidence: \u0668\u0665\u066a", 0.85),
        # Refused rather than guessed.
        ("Confidence: 1e2", None),  # scientific notation
        ("Confidence: 1.5", None),  # a probability above 1, or 1.5%?
        ("Confidence: 85.5", None),  # a decimal without % is a probability
        ("Confidence: 1,000", None),  # a thousands separator or a decimal comma?
        ("Confidence: 80-90%", None),  # a range
        ("Confidence: 80 to 90%", None),
        ("Confidence: 7 out of ten", None),
        ("Confidence: 7 on a scale of 10", None),
        ("Confidence: 0.8.5", None),
        ("Confidence: 9/10%", None),
        ("Confidence: 11/10", None),
        ("Confidence: 1/0", None),
        ("Confidence: 1.5/2", None),
        ("Confidence (1-10): 7", None),  # a scale that does not start at 0
        ("Confidence (0-1): 85", None),
        ("Confidence (0-100): 150", None),
        ("Confidence: -5%", None),
        ("Confidence: 150", None),
        ("Confidence: 101%", None),
        ("Confidence: high", None),
        ("Confidence: 60\nConfidence: unsure", None),  # the last statement counts, even when broken
        ("I have low confidence in this answer.", None),
        ("Confidence intervals: 3", None),
        ("Overconfidence: 90%", None),
        ("The answer is 42.", None),
        ("", None),
    ],
)
def test_parse_confidence(text, expected):
    result = parse_confidence(text)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1e-12)


# -- plots --------------------------------------------------------------------------------------


def test_reliability_diagram_from_samples_and_bins(tmp_path):
    from_samples = reliability_diagram((CONF, CORRECT), tmp_path / "samples.png", title="base")
    from_bins = reliability_diagram(reliability_bins(CONF, CORRECT), tmp_path / "sub" / "bins.png")
    for path in (from_samples, from_bins):
        assert path.stat().st_size > 0
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_reliability_diagram_without_samples(tmp_path):
    path = reliability_diagram(([], []), tmp_path / "empty.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_comparison_plot(tmp_path):
    summaries = {
        "base": {"ece": 0.28, "auroc": 0.59, "brier": 0.3, "n": 200},
        "conftuner": {"ece": 0.11, "auroc": float("nan"), "n": 200},
    }
    path = comparison_plot(summaries, tmp_path / "compare.png", metrics=["ece", "auroc", "brier"])
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    default = comparison_plot(summaries, tmp_path / "default.png", title="calibration")
    assert default.read_bytes()[:8] == PNG_MAGIC
