"""Settlement: the bank's cost of rights by org, source (campaign, activity, purchase), right and
day, read from the ledger alone — what was granted (and its cost), redeemed (and the face value the
bank pays the payment side), expired and revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.platform.access import Permission, Principal
from bankgrowth.rights.models import LedgerEntry, Right


@dataclass(frozen=True)
class SettlementRow:
    day: date
    org_id: str
    source: str
    right: str
    granted: int
    granted_cost_fen: int
    redeemed: int
    redeemed_fen: int
    expired: int
    revoked: int


def report(
    session: Session, *, principal: Principal, start: date, end: date, timezone: str = "Asia/Shanghai"
) -> list[SettlementRow]:
    """One row per (day, org, source, right) with any movement from ``start`` to ``end`` inclusive,
    days in the bank's timezone; a branch sees its subtree's rows."""
    principal.require(Permission.READ)
    zone = ZoneInfo(timezone)
    since = datetime.combine(start, datetime.min.time(), zone)
    until = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone)
    stmt = (
        select(LedgerEntry, Right.code)
        .join(Right, Right.id == LedgerEntry.right_id)
        .where(
            LedgerEntry.at >= since,
            LedgerEntry.at < until,
            LedgerEntry.kind.in_(("grant", "redeem", "expire", "revoke")),
        )
    )
    if principal.scope.org_ids is not None:
        stmt = stmt.where(LedgerEntry.org_id.in_(principal.scope.org_ids))
    totals: dict[tuple[date, str, str, str], list[int]] = {}
    for entry, right_code in session.execute(stmt):
        day = entry.at.astimezone(zone).date()
        row = totals.setdefault(
            (day, entry.org_id or "", f"{entry.source_type}:{entry.source_id}", right_code), [0] * 6
        )
        if entry.kind == "grant":
            row[0] += entry.units
            row[1] += entry.cost_fen
        elif entry.kind == "redeem":
            row[2] += -entry.units
            row[3] += entry.cost_fen
        elif entry.kind == "expire":
            row[4] += -entry.units
        else:
            row[5] += -entry.units
            row[1] += entry.cost_fen  # a revoke gives its grant's cost back
    return [SettlementRow(*key, *values) for key, values in sorted(totals.items())]
