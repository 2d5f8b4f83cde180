"""Customer value: RFM and RFC quintile scores, named RFM segments, value tiers.

Scores are computed among customers who transacted in the trailing 365 days; everyone else has
no score, segment ``none`` and tier ``none``. Each score is a quintile, 1 (worst) to 5 (best):

- **R** recency — the most recent last transaction scores 5 (recency reversed);
- **F** frequency — transactions in 365 days;
- **M** monetary — amount in 365 days;
- **C** contribution — spending plus money withdrawn back to the card in 365 days (RFC).

Quintiles are ``ntile(5)`` over the score's value, ties broken by customer id, so they are
deterministic and identical on every engine. A stored tag version keeps, per score, the four
(value, customer id) pairs where quintiles 2-5 begin (:func:`cut_points`); a customer's score is
then 1 + the number of those pairs at or below their own (:func:`scores_from_cuts`) — exactly the
``ntile`` result, without ranking everyone again on each read.

RFM segment (a deterministic map of the R and F scores, the widely used R×F grid):

================== ===========================
segment            R score × F score
================== ===========================
Champions          R 5, F 4-5
Loyal              R 3-4, F 4-5
Potential Loyalist R 4-5, F 2-3
New                R 5, F 1
Promising          R 4, F 1
Need Attention     R 3, F 3
About to Sleep     R 3, F 1-2
At Risk            R 1-2, F 3-4
Can't Lose Them    R 1-2, F 5
Hibernating        R 1-2, F 1-2 (but not R 1 F 1)
Lost               R 1, F 1
================== ===========================

Value tier by M score: ``high`` (5), ``medium`` (3-4), ``low`` (1-2), ``none`` (no transaction).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import ibis
import ibis.expr.types as ir

SEGMENTS: tuple[tuple[str, str], ...] = (
    ("Champions", "重要价值客户"),
    ("Loyal", "忠诚客户"),
    ("Potential Loyalist", "潜力忠诚客户"),
    ("New", "新客户"),
    ("Promising", "有潜力客户"),
    ("Need Attention", "需关注客户"),
    ("About to Sleep", "即将沉睡客户"),
    ("At Risk", "流失风险客户"),
    ("Can't Lose Them", "不能失去的客户"),
    ("Hibernating", "沉睡客户"),
    ("Lost", "已流失客户"),
)
VALUE_TIERS: tuple[str, ...] = ("high", "medium", "low", "none")


def segment_of(r: int, f: int) -> str:
    """The RFM segment of one (R, F) pair — the reference the expression below must match."""
    if r == 5 and f >= 4:
        return "Champions"
    if r in (3, 4) and f >= 4:
        return "Loyal"
    if r >= 4 and f in (2, 3):
        return "Potential Loyalist"
    if r == 5 and f == 1:
        return "New"
    if r == 4 and f == 1:
        return "Promising"
    if r == 3 and f == 3:
        return "Need Attention"
    if r == 3 and f <= 2:
        return "About to Sleep"
    if r <= 2 and f in (3, 4):
        return "At Risk"
    if r <= 2 and f == 5:
        return "Can't Lose Them"
    if r == 1 and f == 1:
        return "Lost"
    return "Hibernating"


def segment_expr(r: ir.IntegerValue, f: ir.IntegerValue) -> ir.StringValue:
    return ibis.cases(
        (r.isnull(), "none"),
        ((r == 5) & (f >= 4), "Champions"),
        (r.isin([3, 4]) & (f >= 4), "Loyal"),
        ((r >= 4) & f.isin([2, 3]), "Potential Loyalist"),
        ((r == 5) & (f == 1), "New"),
        ((r == 4) & (f == 1), "Promising"),
        ((r == 3) & (f == 3), "Need Attention"),
        ((r == 3) & (f <= 2), "About to Sleep"),
        ((r <= 2) & f.isin([3, 4]), "At Risk"),
        ((r <= 2) & (f == 5), "Can't Lose Them"),
        ((r == 1) & (f == 1), "Lost"),
        else_="Hibernating",
    )


def _quintile(value: ir.Value, key: ir.Value) -> ir.IntegerValue:
    # ibis.ntile is 0-based; scores are 1-5
    return (ibis.ntile(5).over(order_by=[value, key]) + 1).cast("int64")


SCORED: dict[str, str] = {
    "rfm_r": "last_txn_at",
    "rfm_f": "txn_count_365d",
    "rfm_m": "txn_amount_365d",
    "rfc_c": "contribution_365d",
}
"""Each score and the tag it ranks."""


def ntile_starts(n: int, buckets: int = 5) -> list[int]:
    """0-based positions where buckets 2.. begin under SQL ``ntile`` over ``n`` rows (the first
    ``n % buckets`` buckets hold one row more); positions past the end are left out."""
    q, r = divmod(n, buckets)
    starts = [k * q + min(k, r) for k in range(1, buckets)]
    return [p for p in starts if p < n]


def cut_points(w: ir.Table) -> dict[str, list[tuple[Any, int]]]:
    """Per score, the (value, customer id) pairs where its quintiles 2-5 begin, ranked among the
    active customers of ``w`` (one sort of the active customers per score)."""
    active = w.filter(w.txn_count_365d > 0)
    n = int(active.count().to_pyarrow().as_py())
    starts = ntile_starts(n)
    out: dict[str, list[tuple[Any, int]]] = {}
    for score, column in SCORED.items():
        if not starts:
            out[score] = []
            continue
        pos = ibis.row_number().over(order_by=[active[column], active.customer_id])
        ranked = active.select("customer_id", _v=active[column], _pos=pos)
        rows = ranked.filter(ranked._pos.isin(starts)).order_by("_pos").to_pyarrow().to_pylist()
        out[score] = [(r["_v"], int(r["customer_id"])) for r in rows]
    return out


def scores_from_cuts(w: ir.Table, cuts: dict[str, list[tuple[Any, int]]]) -> ir.Table:
    """``w`` with the value scores given by stored :func:`cut_points` (nothing re-ranked)."""
    active = w.txn_count_365d > 0
    scores: dict[str, ir.Value] = {}
    for score, column in SCORED.items():
        v, cid = w[column], w.customer_id
        at_or_above = [
            ibis.ifelse((v > value) | ((v == value) & (cid >= key)), 1, 0) for value, key in cuts.get(score, [])
        ]
        total = functools.reduce(operator.add, at_or_above, ibis.literal(1))
        scores[score] = ibis.ifelse(active, total, ibis.null()).cast("int64")
    return _named(w.mutate(**scores))


def value_scores(w: ir.Table) -> ir.Table:
    """``rfm_r``, ``rfm_f``, ``rfm_m``, ``rfc_c`` per active customer (keyed ``_cid``).

    Quintiles are ranked among the active customers only: sorting only them measured 1 s faster
    at 2M customers than one window over everyone partitioned by activity.
    """
    active = w.filter(w.txn_count_365d > 0)
    return active.select(
        _cid=active.customer_id,
        rfm_r=_quintile(active.last_txn_at, active.customer_id),
        rfm_f=_quintile(active.txn_count_365d, active.customer_id),
        rfm_m=_quintile(active.txn_amount_365d, active.customer_id),
        rfc_c=_quintile(active.contribution_365d, active.customer_id),
    )


def attach_scores(w: ir.Table, scores: ir.Table) -> ir.Table:
    """Join :func:`value_scores` back and add ``rfm_score``, ``rfm_segment``, ``value_tier``."""
    return _named(w.left_join(scores, w.customer_id == scores._cid).drop("_cid"))


def _named(joined: ir.Table) -> ir.Table:
    """Add ``rfm_score``, ``rfm_segment`` and ``value_tier`` from the four scores."""
    return joined.mutate(
        rfm_score=(joined.rfm_r * 100 + joined.rfm_f * 10 + joined.rfm_m).cast("int64"),
        rfm_segment=segment_expr(joined.rfm_r, joined.rfm_f),
        value_tier=ibis.cases(
            (joined.rfm_m.isnull(), "none"),
            (joined.rfm_m == 5, "high"),
            (joined.rfm_m >= 3, "medium"),
            else_="low",
        ),
    )


def with_value_scores(w: ir.Table) -> ir.Table:
    """``w`` with its value scores. ``w`` is read twice (ranked, joined back), so it should be
    materialised (see :func:`bankgrowth.insight.compute.build_tags`) or the engine computes it
    once for each side."""
    return attach_scores(w, value_scores(w))
