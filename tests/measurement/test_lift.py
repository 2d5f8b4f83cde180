"""The lift statistics are honest: 95% intervals cover a known true effect about 95 times in 100,
CUPED narrows them when the pre-period is informative, and a broken split is flagged."""

from __future__ import annotations

import numpy as np
import pytest

from bankgrowth.measurement.lift import cuped, sample_ratio, welch

pytestmark = pytest.mark.slow


def test_the_95_percent_interval_covers_the_true_effect_in_at_least_93_of_100_campaigns() -> None:
    # given: 100 small campaigns, conversion 10% in control and 13% when treated (true lift +3 points)
    rng = np.random.default_rng(2026)
    covered_abs = covered_rel = 0
    for _ in range(100):
        treated = rng.random(4_000) < 0.13
        control = rng.random(1_000) < 0.10
        # when
        lift = welch(treated, control)
        # then
        covered_abs += lift.ci_low <= 0.03 <= lift.ci_high
        assert lift.relative_low is not None and lift.relative_high is not None
        covered_rel += lift.relative_low <= 0.3 <= lift.relative_high
    assert covered_abs >= 93 and covered_rel >= 93, (covered_abs, covered_rel)


def test_cuped_narrows_the_interval_by_a_fifth_when_the_pre_period_predicts_the_outcome() -> None:
    # given: spend in the campaign window correlates 0.7 with the pre-period; the treatment adds 5 yuan
    rng = np.random.default_rng(7)
    widths, covered = [], 0
    for _ in range(100):
        pre = rng.gamma(2.0, 50.0, size=6_000)
        post = 0.7 * pre + rng.normal(0, 50, size=6_000) + 30
        treated = rng.random(6_000) >= 0.1
        post = post + 5.0 * treated
        # when
        plain = welch(post[treated], post[~treated])
        adjusted, theta = cuped(post[treated], post[~treated], pre[treated], pre[~treated])
        # then
        widths.append((adjusted.ci_high - adjusted.ci_low) / (plain.ci_high - plain.ci_low))
        covered += adjusted.ci_low <= 5.0 <= adjusted.ci_high
        assert 0.6 < theta < 0.8
    assert float(np.mean(widths)) <= 0.8, np.mean(widths)  # at least 20% narrower
    assert covered >= 93


def test_a_sample_ratio_mismatch_is_flagged_and_a_fair_split_is_not() -> None:
    assert not sample_ratio(9_020, 980, 0.9).mismatch
    broken = sample_ratio(9_300, 700, 0.9)
    assert broken.mismatch and broken.p_value < 0.001
    with pytest.raises(ValueError):
        sample_ratio(10, 10, 1.0)
