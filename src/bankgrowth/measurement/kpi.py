"""The bank summary: how many customers are bound and transacting, and where the money flows.

Every figure is one Ibis expression over the canonical tables, so it runs unchanged on DuckDB
and on Spark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import ibis

if TYPE_CHECKING:
    from ibis.backends import BaseBackend


@dataclass(frozen=True)
class InstitutionRow:
    institution: str
    transactions: int
    amount_yuan: Decimal
    customers: int
    share_of_transactions: float


@dataclass(frozen=True)
class BankSummary:
    as_of: date | None  # the last local day with transactions
    customers: int
    bound: int  # customers with at least one live binding at the end of as_of
    transacting_30d: int  # customers with a transaction in the 30 days up to as_of
    transacting_365d: int
    transactions: int
    amount_yuan: Decimal
    withdrawal_yuan: Decimal  # money withdrawn from wallets back to cards (提现回流)
    by_institution: list[InstitutionRow]


def _yuan(fen: int | None) -> Decimal:
    return (Decimal(fen or 0) / 100).quantize(Decimal("0.01"))


def bank_summary(con: BaseBackend, *, timezone: str = "Asia/Shanghai") -> BankSummary:
    customers = con.table("customers")
    bindings = con.table("quickpay_bindings")
    txns = con.table("transactions")
    tz = ZoneInfo(timezone)
    last = txns.txn_at.max().to_pyarrow().as_py()
    n_customers = int(customers.count().to_pyarrow().as_py())
    if last is None:
        return BankSummary(None, n_customers, 0, 0, 0, 0, Decimal("0.00"), Decimal("0.00"), [])
    as_of = last.astimezone(tz).date()
    end = datetime.combine(as_of + timedelta(days=1), time(), tz)
    live = bindings.filter((bindings.bound_at < end) & (bindings.unbound_at.isnull() | (bindings.unbound_at >= end)))
    bound = int(live.customer_id.nunique().to_pyarrow().as_py())

    def active(days: int) -> int:
        since = end - timedelta(days=days)
        window = txns.filter((txns.txn_at >= since) & (txns.txn_at < end))
        return int(window.customer_id.nunique().to_pyarrow().as_py())

    totals = (
        txns.aggregate(
            n=txns.count(),
            fen=txns.amount_fen.sum(),
            withdrawal=txns.amount_fen.sum(where=txns.scene == "withdrawal"),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    by_inst = (
        txns.group_by("institution")
        .aggregate(n=txns.count(), fen=txns.amount_fen.sum(), customers=txns.customer_id.nunique())
        .order_by(ibis.desc("n"), "institution")
        .to_pyarrow()
        .to_pylist()
    )
    total_n = int(totals["n"] or 0)
    rows = [
        InstitutionRow(
            institution=r["institution"],
            transactions=int(r["n"]),
            amount_yuan=_yuan(r["fen"]),
            customers=int(r["customers"]),
            share_of_transactions=(r["n"] / total_n) if total_n else 0.0,
        )
        for r in by_inst
    ]
    return BankSummary(
        as_of=as_of,
        customers=n_customers,
        bound=bound,
        transacting_30d=active(30),
        transacting_365d=active(365),
        transactions=total_n,
        amount_yuan=_yuan(totals["fen"]),
        withdrawal_yuan=_yuan(totals["withdrawal"]),
        by_institution=rows,
    )
