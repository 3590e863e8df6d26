"""DeconfoundLM's reward estimators: fit ``Y = h(text) + g(confounders) + noise`` and keep ``h`` as the reward.

``X`` holds text features (frozen embeddings), ``C`` the known confounders (numbers, or one-hot fixed effects of a
category). Five variants, all ridge regression in closed form on standardised features:

- ``naive``: ``h`` fit to ``Y`` alone; it credits whatever in the text predicts the confounders.
- ``inputs``: the confounders as extra inputs beside the text, penalised like the text; ``h`` is the text part.
- ``residualised``: ``Y`` with the confounders' least-squares fit removed, then ``h`` fit to what is left.
- ``joint``: text and confounders together, the confounders unpenalised (by Frisch-Waugh-Lovell, ``h`` equals the
  fit of ``Y`` on the text after both are residualised on the confounders).
- ``instrumented``: as ``residualised``, but ``g`` is estimated by two-stage least squares with instruments ``Z``
  (``linearmodels``' ``IV2SLS``), for a confounder that is endogenous or recorded with error: least squares then
  misjudges its effect (a noisy record attenuates it), and the part left in ``Y`` is credited to the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARIANTS = ("naive", "inputs", "residualised", "joint", "instrumented")


@dataclass(frozen=True)
class TextReward:
    """``h``: a linear map of standardised text features to a reward."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    variant: str

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.weights


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    return (x - mean) / scale, mean, scale


def _ridge(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Weights minimising ``|y - x w|^2 + sum(penalty * w^2)`` (x and y centred)."""
    return np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)


def _residual(
    target: np.ndarray, confounders: np.ndarray, instruments: np.ndarray | None = None
) -> np.ndarray:
    """``target`` minus its fit on the confounders (with an intercept): least squares, or two-stage least squares
    with ``instruments``."""
    design = np.column_stack([np.ones(len(confounders)), confounders])
    if instruments is None:
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    else:
        coef = two_stage_least_squares(target, confounders, instruments)
    return target - design @ coef


def deconfounded_outcomes(
    outcomes: np.ndarray, confounders: np.ndarray, instruments: np.ndarray | None = None
) -> np.ndarray:
    """The outcomes with the confounders' fit removed (least squares, or two-stage least squares with
    ``instruments``): the target a text model learns as ``h`` in the residualised and instrumented variants, e.g.
    the regression head of the ``reward_model`` method in place of ridge on frozen embeddings."""
    y = np.asarray(outcomes, dtype=np.float64)
    c = np.asarray(confounders, dtype=np.float64).reshape(len(y), -1)
    if instruments is not None and len(instruments) != len(y):
        raise ValueError(
            f"instruments need one row per outcome: {len(instruments)} rows for {len(y)} outcomes."
        )
    if not np.isfinite(y).all():
        raise ValueError("outcomes must be finite (no NaN or inf).")
    z = None if instruments is None else np.asarray(instruments, dtype=np.float64).reshape(len(y), -1)
    return _residual(y, c, z)


def two_stage_least_squares(
    outcome: np.ndarray,
    endogenous: np.ndarray,
    instruments: np.ndarray,
    exogenous: np.ndarray | None = None,
) -> np.ndarray:
    """The two-stage least-squares coefficients of ``outcome`` on an intercept, the ``exogenous`` columns and the
    ``endogenous`` ones (in that order), the latter instrumented by ``instruments`` (``linearmodels``' IV2SLS)."""
    from linearmodels.iv import IV2SLS  # imports statsmodels: loaded only when an instrument is used

    y = np.asarray(outcome, dtype=np.float64)
    endog = np.asarray(endogenous, dtype=np.float64).reshape(len(y), -1)
    instr = np.asarray(instruments, dtype=np.float64).reshape(len(y), -1)
    exog = np.ones((len(y), 1))
    if exogenous is not None:
        exog = np.column_stack([exog, np.asarray(exogenous, dtype=np.float64).reshape(len(y), -1)])
    if instr.shape[1] < endog.shape[1]:
        raise ValueError(
            f"two-stage least squares needs at least one instrument per endogenous column: {instr.shape[1]} "
            f"instruments for {endog.shape[1]} confounders."
        )
    if not (np.isfinite(endog).all() and np.isfinite(instr).all() and np.isfinite(exog).all()):
        raise ValueError("confounders and instruments must be finite (no NaN or inf).")
    fit = IV2SLS(y, exog, endog, instr).fit(cov_type="unadjusted")
    return np.asarray(fit.params, dtype=np.float64)


def fit_text_reward(
    features: np.ndarray,
    outcomes: np.ndarray,
    confounders: np.ndarray | None,
    variant: str,
    alpha: float = 1.0,
    instruments: np.ndarray | None = None,
) -> TextReward:
    """Fit ``h`` by ``variant`` (see the module docstring); ``alpha`` is the ridge penalty per standardised
    feature, scaled by the number of rows; ``instruments`` (rows x at least one column per confounder) are the
    ``instrumented`` variant's, and only its."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}.")
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be rows x dims with one row per outcome: {x.shape} for {y.shape}.")
    if variant != "naive":
        if confounders is None:
            raise ValueError(f"variant {variant!r} needs the confounders; only 'naive' fits without them.")
        c = np.asarray(confounders, dtype=np.float64).reshape(len(y), -1)
    if (instruments is None) == (variant == "instrumented"):
        raise ValueError(
            "variant 'instrumented' needs instruments: one row per outcome, at least one column per confounder."
            if instruments is None
            else f"instruments are used by variant 'instrumented' only, not {variant!r}: drop them or change the variant."
        )
    if instruments is not None and len(instruments) != len(y):
        raise ValueError(
            f"instruments need one row per outcome: {len(instruments)} rows for {len(y)} outcomes."
        )
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise ValueError("features and outcomes must be finite (no NaN or inf).")
    xs, mean, scale = _standardise(x)
    penalty = np.full(xs.shape[1], alpha * len(y))
    y = y - y.mean()
    if variant == "naive":
        weights = _ridge(xs, y, penalty)
    elif variant in ("residualised", "instrumented"):
        z = None if instruments is None else np.asarray(instruments, dtype=np.float64).reshape(len(y), -1)
        weights = _ridge(xs, _residual(y, c, z), penalty)
    else:
        cs, _, _ = _standardise(c)
        both = np.column_stack([xs, cs])
        extra = np.full(cs.shape[1], alpha * len(y) if variant == "inputs" else 0.0)
        weights = _ridge(both, y, np.concatenate([penalty, extra]))[: xs.shape[1]]
    return TextReward(mean=mean, scale=scale, weights=weights, variant=variant)


def one_hot(values: list, categories: list | None = None) -> np.ndarray:
    """Fixed effects of a category: one column per category but the first (the intercept absorbs it)."""
    categories = sorted(set(values)) if categories is None else categories
    index = {c: i for i, c in enumerate(categories)}
    out = np.zeros((len(values), max(len(categories) - 1, 0)))
    for row, value in enumerate(values):
        if index.get(value, 0) > 0:
            out[row, index[value] - 1] = 1.0
    return out
