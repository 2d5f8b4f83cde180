"""The customer lifecycle: stage definitions, evaluated as of the end of a business day.

Stages, checked in this order (the first that applies wins); *end* is midnight after the as-of
day in the business timezone, and only data before *end* counts:

==============  ==========  ==========================================================================
stage           中文        rule
==============  ==========  ==========================================================================
``unbound``     未绑卡      never bound a card into any payment institution
``churned``     流失        every binding has been removed, or no transaction for more than
                            ``churn_days`` (default 90)
``bound``       绑卡未交易  holds a live binding but has never transacted
``won_back``    流失挽回    active again: the first transaction of the last ``winback_days`` (30)
                            came more than ``churn_days`` after the one before it
``at_risk``     流失预警    transacted before, but not in the last ``at_risk_days`` (30)
``super``       超级用户    more than ``super_user_txns`` (20) transactions in the trailing 365 days
``transacting`` 有交易      transacted in the last ``at_risk_days``
==============  ==========  ==========================================================================

A customer stays ``won_back`` for ``winback_days`` after returning, then is ``transacting`` or
``super`` again. Withdrawals back to the card (提现回流) count as transactions: they are the
wallet using the bound card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir

from bankgrowth.warehouse.timeutil import epoch_seconds

if TYPE_CHECKING:
    from bankgrowth.config import Settings


@dataclass(frozen=True)
class Stage:
    code: str
    zh: str
    en: str
    meaning: str


STAGES: tuple[Stage, ...] = (
    Stage("unbound", "未绑卡", "Unbound", "Never bound a card into a payment institution."),
    Stage("bound", "绑卡未交易", "Bound, no transaction", "Holds a live binding but has never transacted."),
    Stage("transacting", "有交易", "Transacting", "Transacted recently, at most the super-user threshold in a year."),
    Stage("super", "超级用户", "Super user", "Transacted recently and more than the threshold in 365 days."),
    Stage("at_risk", "流失预警", "At risk", "Transacted before, but not within the at-risk window."),
    Stage("churned", "流失", "Churned", "No transaction for the churn window, or every binding removed."),
    Stage("won_back", "流失挽回", "Won back", "Returned after a churn-length gap, within the win-back window."),
)
STAGE_CODES: tuple[str, ...] = tuple(s.code for s in STAGES)


@dataclass(frozen=True)
class Thresholds:
    at_risk_days: int = 30
    churn_days: int = 90
    super_user_txns: int = 20
    winback_days: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(settings.at_risk_days, settings.churn_days, settings.super_user_txns, settings.winback_days)


def stage_expr(w: ir.Table, end: ir.TimestampScalar, th: Thresholds, engine: str = "") -> ir.StringValue:
    """The stage of each row of ``w``, a per-customer table with the inputs below; ``engine`` is
    the backend's name (``con.name``), for the fastest spelling of a gap in seconds.

    Inputs: ``bindings_ever`` and ``bindings_live`` (counts), ``last_txn_at``, ``txn_count_365d``,
    ``last_txn_before_winback`` and ``first_txn_in_winback`` (timestamps, null when none).
    """
    day = ibis.interval(days=1)
    gap_from_return = epoch_seconds(w.first_txn_in_winback, engine) - epoch_seconds(w.last_txn_before_winback, engine)
    returned = (
        w.first_txn_in_winback.notnull()
        & w.last_txn_before_winback.notnull()
        & (gap_from_return > th.churn_days * 86_400)
    )
    return (
        ibis.cases(
            (w.bindings_ever.fill_null(0) == 0, "unbound"),
            (w.bindings_live.fill_null(0) == 0, "churned"),
            (w.last_txn_at.isnull(), "bound"),
            (w.last_txn_at < end - day * th.churn_days, "churned"),
            (returned, "won_back"),
            (w.last_txn_at < end - day * th.at_risk_days, "at_risk"),
            (w.txn_count_365d.fill_null(0) > th.super_user_txns, "super"),
            else_="transacting",
        )
    ).name("stage")
