"""The bank summary (KPI): how many customers are registered, bound, transacting and super users,
and where the money flows — by institution, and by business day over the last 30 days.

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

from bankgrowth.warehouse.timeutil import last_data_day, local_date

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
class DayRow:
    day: date  # a business day in the bank's timezone
    transactions: int
    amount_yuan: Decimal
    by_institution: dict[str, int]  # transactions


@dataclass(frozen=True)
class BankSummary:
    as_of: date | None  # the last local day with transactions
    customers: int
    bound: int  # customers with at least one live binding at the end of as_of
    transacting_30d: int  # customers with a transaction in the 30 days up to as_of
    transacting_365d: int
    super_users: int  # more than ``super_user_txns`` transactions in the 365 days up to as_of (超级用户)
    transactions: int
    amount_yuan: Decimal
    withdrawal_yuan: Decimal  # money withdrawn from wallets back to cards (提现回流)
    by_institution: list[InstitutionRow]
    by_day: list[DayRow]  # the last ``DAYS`` business days up to as_of, oldest first, days without any included
    super_user_txns: int  # the threshold ``super_users`` counts above


def _yuan(fen: int | None) -> Decimal:
    return (Decimal(fen or 0) / 100).quantize(Decimal("0.01"))


DAYS = 30


def bank_summary(con: BaseBackend, *, timezone: str = "Asia/Shanghai", super_user_txns: int = 20) -> BankSummary:
    """The summary as of the last business day with transactions. ``super_user_txns`` is the
    lifecycle's threshold (``BANKGROWTH_SUPER_USER_TXNS``); like the lifecycle, withdrawals back to
    the card count as transactions. The lifecycle's ``super`` stage also asks for a live binding and
    a recent transaction, so it can be a little smaller than this count."""
    customers = con.table("customers")
    bindings = con.table("quickpay_bindings")
    txns = con.table("transactions")
    tz = ZoneInfo(timezone)
    as_of = last_data_day(con, timezone)
    n_customers = int(customers.count().to_pyarrow().as_py())
    if as_of is None:
        return BankSummary(None, n_customers, 0, 0, 0, 0, 0, Decimal("0.00"), Decimal("0.00"), [], [], super_user_txns)
    end = datetime.combine(as_of + timedelta(days=1), time(), tz)
    live = bindings.filter((bindings.bound_at < end) & (bindings.unbound_at.isnull() | (bindings.unbound_at >= end)))
    bound = int(live.customer_id.nunique().to_pyarrow().as_py())

    def active(days: int) -> int:
        since = end - timedelta(days=days)
        window = txns.filter((txns.txn_at >= since) & (txns.txn_at < end))
        return int(window.customer_id.nunique().to_pyarrow().as_py())

    year = txns.filter((txns.txn_at >= end - timedelta(days=365)) & (txns.txn_at < end))
    per_customer = year.group_by("customer_id").aggregate(n=year.count())
    supers = int(per_customer.filter(per_customer.n > super_user_txns).count().to_pyarrow().as_py())
    first_day = as_of - timedelta(days=DAYS - 1)
    recent = txns.filter(txns.txn_at >= datetime.combine(first_day, time(), tz), txns.txn_at < end)
    recent = recent.mutate(day=local_date(recent.txn_at, timezone))
    daily = (
        recent.group_by("day", "institution")
        .aggregate(n=recent.count(), fen=recent.amount_fen.sum())
        .to_pyarrow()
        .to_pylist()
    )
    days: dict[date, list[tuple[str, int, int]]] = {first_day + timedelta(days=i): [] for i in range(DAYS)}
    for r in daily:
        days.setdefault(r["day"], []).append((str(r["institution"]), int(r["n"]), int(r["fen"] or 0)))
    by_day = [
        DayRow(
            day=d,
            transactions=sum(n for _, n, _ in rs),
            amount_yuan=_yuan(sum(fen for _, _, fen in rs)),
            by_institution={inst: n for inst, n, _ in rs},
        )
        for d, rs in sorted(days.items())
    ]
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
        super_users=supers,
        transactions=total_n,
        amount_yuan=_yuan(totals["fen"]),
        withdrawal_yuan=_yuan(totals["withdrawal"]),
        by_institution=rows,
        by_day=by_day,
        super_user_txns=super_user_txns,
    )
