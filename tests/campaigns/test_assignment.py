"""Control-group assignment: deterministic, independent across campaigns, in the planned shares."""

from __future__ import annotations

from collections import Counter

from bankgrowth.campaigns.assignment import CONTROL, assign
from bankgrowth.measurement.lift import sample_ratio

ARMS = [("voucher", 3), ("points", 1)]


def test_the_same_customer_lands_in_the_same_group_every_time() -> None:
    first = [assign("act-2026-11", c, 0.1, ARMS) for c in range(1, 2_001)]
    again = [assign("act-2026-11", c, 0.1, ARMS) for c in range(1, 2_001)]
    assert first == again


def test_the_split_follows_the_shares_and_passes_the_sample_ratio_check() -> None:
    # when
    groups = Counter(assign("act-2026-11", c, 0.1, ARMS) for c in range(1, 100_001))
    # then: control 10%; the rest 3:1 between the arms
    assert not sample_ratio(100_000 - groups[CONTROL], groups[CONTROL], 0.9).mismatch
    assert not sample_ratio(groups["voucher"], groups["points"], 0.75).mismatch
    assert abs(groups[CONTROL] - 10_000) < 4 * (100_000 * 0.1 * 0.9) ** 0.5


def test_two_campaigns_split_independently() -> None:
    a = [assign("campaign-a", c, 0.5, [("t", 1)]) == CONTROL for c in range(1, 20_001)]
    b = [assign("campaign-b", c, 0.5, [("t", 1)]) == CONTROL for c in range(1, 20_001)]
    both = sum(x and y for x, y in zip(a, b, strict=True))
    assert abs(both - 5_000) < 4 * (20_000 * 0.25 * 0.75) ** 0.5  # as if independent coin flips
