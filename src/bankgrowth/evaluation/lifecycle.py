"""How well computed lifecycle stages agree with the simulator's knowledge of each customer.

The truth knows each customer's latent state at the end of the as-of day:

======================== ============================================ ==============================
truth state              meaning                                      stages that agree
======================== ============================================ ==============================
never_bound              has not bound a card                         unbound
removed every binding    (bank data) bound before, none live now      churned
never_active             bound, but never transacts untreated         bound
lapsed before history    life ended before the loaded history began   bound, churned
lapsed                   life ended more than churn_days ago          churned
lapsing                  life ended within churn_days                 at_risk, churned, and —
                                                                      within at_risk_days — any
                                                                      active stage
dormant                  inside a dormant spell                       at_risk, churned, bound
active                   alive, at least one expected transaction     transacting, super, won_back
                         in at_risk_days
active, low rate         alive, under one expected transaction        transacting, super, won_back
======================== ============================================ ==============================

The rows say where data cannot show the truth yet: a customer whose life ended before the
history began looks like one who never transacted; one who lapsed recently still looks active or
at risk; an active customer with a low rate may simply not have transacted within the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import ibis

from bankgrowth.insight import store
from bankgrowth.insight.lifecycle import Thresholds
from bankgrowth.insight.tags import end_of_day

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

ACTIVE = ("transacting", "super", "won_back")
AGREEING: dict[str, tuple[str, ...]] = {
    "never_bound": ("unbound",),
    "removed every binding": ("churned",),
    "never_active": ("bound",),
    "lapsed before history": ("bound", "churned"),
    "lapsed": ("churned",),
    "lapsing, within at_risk_days": ("at_risk", "churned", *ACTIVE),
    "lapsing": ("at_risk", "churned"),
    "dormant": ("at_risk", "churned", "bound"),
    "active": ACTIVE,
    "active, low rate": ACTIVE,
}


@dataclass(frozen=True)
class AgreementRow:
    truth_state: str
    customers: int
    agreeing: int
    top_stages: list[tuple[str, int]]

    @property
    def rate(self) -> float:
        return self.agreeing / self.customers if self.customers else 1.0


@dataclass(frozen=True)
class Agreement:
    as_of: date
    rows: list[AgreementRow]

    @property
    def overall(self) -> float:
        total = sum(r.customers for r in self.rows)
        return sum(r.agreeing for r in self.rows) / total if total else 1.0


def lifecycle_agreement(
    con: BaseBackend,
    truth_file: Path,
    *,
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
    thresholds: Thresholds | None = None,
) -> Agreement:
    th = thresholds or Thresholds()
    tags = store.tags_table(con, as_of)
    day = as_of or store.latest(con)
    assert day is not None
    end = ibis.literal(end_of_day(day, timezone), type="timestamp('UTC')")
    truth = con.read_parquet(str(truth_file))
    txns = con.table("transactions")
    history_start = txns.txn_at.min().to_pyarrow().as_py()
    j = tags.select("customer_id", "stage", "bindings_ever", "bindings_live").inner_join(truth, "customer_id")
    day_ = ibis.interval(days=1)
    lapsed = j.churn_at.notnull() & (j.churn_at < end)
    state = ibis.cases(
        (j.first_bound_at.isnull() | (j.first_bound_at >= end), "never_bound"),
        ((j.bindings_ever > 0) & (j.bindings_live == 0), "removed every binding"),
        (j.never_transacts, "never_active"),
        (lapsed & (j.churn_at < ibis.literal(history_start, type="timestamp('UTC')")), "lapsed before history"),
        (lapsed & (j.churn_at < end - day_ * th.churn_days), "lapsed"),
        (lapsed & (j.churn_at >= end - day_ * th.at_risk_days), "lapsing, within at_risk_days"),
        (lapsed, "lapsing"),
        (j.dormant_from.notnull() & (j.dormant_from <= end) & (j.dormant_to > end), "dormant"),
        (j.txn_rate_per_day * th.at_risk_days < 1, "active, low rate"),
        else_="active",
    )
    counts = (
        j.mutate(truth_state=state)
        .group_by(["truth_state", "stage"])
        .aggregate(n=ibis._.count())
        .to_pyarrow()
        .to_pylist()
    )
    rows = []
    for truth_state, agreeing_stages in AGREEING.items():
        mine = [r for r in counts if r["truth_state"] == truth_state]
        if not mine:
            continue
        total = sum(int(r["n"]) for r in mine)
        agree = sum(int(r["n"]) for r in mine if r["stage"] in agreeing_stages)
        top = sorted(((r["stage"], int(r["n"])) for r in mine), key=lambda kv: -kv[1])[:4]
        rows.append(AgreementRow(truth_state, total, agree, top))
    return Agreement(day, rows)
