"""The statistics of a campaign's lift against its randomized control group.

- :func:`welch`: the difference of means with Welch's t interval (unequal variances), and the
  relative lift ``mean_t / mean_c - 1`` with a delta-method interval;
- :func:`cuped`: the same after CUPED — each outcome adjusted by its pre-period value,
  ``y - θ (x - mean x)`` with ``θ = cov(y, x) / var(x)`` pooled over both groups — which narrows the
  interval when the pre-period predicts the outcome and leaves the estimate unbiased;
- :func:`sample_ratio`: the chi-square test of the observed split against the planned one
  (a sample-ratio mismatch, SRM, means the assignment or the logging is broken: warn at p < 0.001).

Per-customer outcomes are arrays (conversion 0/1, transaction counts, amounts in fen as floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Lift:
    treatment_mean: float
    control_mean: float
    diff: float  # absolute lift: treatment mean minus control mean
    ci_low: float
    ci_high: float
    p_value: float
    relative: float | None  # treatment mean / control mean - 1; None when the control mean is 0
    relative_low: float | None
    relative_high: float | None
    n_treatment: int
    n_control: int


def welch(treatment: np.ndarray, control: np.ndarray, *, confidence: float = 0.95) -> Lift:
    t = np.asarray(treatment, dtype="float64")
    c = np.asarray(control, dtype="float64")
    nt, nc = len(t), len(c)
    if nt < 2 or nc < 2:
        raise ValueError(f"each group needs at least 2 customers; found {nt} and {nc}")
    mt, mc = float(t.mean()), float(c.mean())
    vt, vc = float(t.var(ddof=1)), float(c.var(ddof=1))
    se2 = vt / nt + vc / nc
    diff = mt - mc
    if se2 == 0:
        return Lift(mt, mc, diff, diff, diff, 1.0 if diff == 0 else 0.0, *_relative(mt, mc, 0, 0, 0), nt, nc)
    # Welch–Satterthwaite degrees of freedom
    df = se2**2 / ((vt / nt) ** 2 / (nt - 1) + (vc / nc) ** 2 / (nc - 1))
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    se = se2**0.5
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Lift(mt, mc, diff, diff - q * se, diff + q * se, p, *_relative(mt, mc, vt / nt, vc / nc, z), nt, nc)


def _relative(
    mt: float, mc: float, var_mt: float, var_mc: float, z: float
) -> tuple[float | None, float | None, float | None]:
    """r = mt / mc - 1; var(r) ≈ var(mt) / mc² + mt² var(mc) / mc⁴ (delta method, groups independent)."""
    if mc == 0:
        return None, None, None
    r = mt / mc - 1
    se = (var_mt / mc**2 + mt**2 * var_mc / mc**4) ** 0.5
    return r, r - z * se, r + z * se


def cuped(
    treatment: np.ndarray,
    control: np.ndarray,
    treatment_pre: np.ndarray,
    control_pre: np.ndarray,
    *,
    confidence: float = 0.95,
) -> tuple[Lift, float]:
    """The lift on CUPED-adjusted outcomes, and θ. Means stay the groups' own (the adjustment has
    mean zero over both groups, so the difference is unbiased); only the variance shrinks."""
    y = np.concatenate([np.asarray(treatment, "float64"), np.asarray(control, "float64")])
    x = np.concatenate([np.asarray(treatment_pre, "float64"), np.asarray(control_pre, "float64")])
    vx = float(x.var(ddof=1))
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    nt = len(treatment)
    return welch(adjusted[:nt], adjusted[nt:], confidence=confidence), theta


@dataclass(frozen=True)
class SampleRatio:
    observed_treatment: int
    observed_control: int
    expected_treatment_share: float
    chi2: float
    p_value: float
    mismatch: bool  # p < 0.001: do not trust the lift until the cause is found


def sample_ratio(n_treatment: int, n_control: int, expected_treatment_share: float) -> SampleRatio:
    if not 0 < expected_treatment_share < 1:
        raise ValueError(f"the planned treatment share must be between 0 and 1; found {expected_treatment_share}")
    total = n_treatment + n_control
    expected = [total * expected_treatment_share, total * (1 - expected_treatment_share)]
    chi2, p = stats.chisquare([n_treatment, n_control], f_exp=expected)
    return SampleRatio(n_treatment, n_control, expected_treatment_share, float(chi2), float(p), bool(p < SRM_ALPHA))
