"""Every counter that guards money, in one module: pool stripes and per-customer caps.

The rules, kept here and nowhere else:

- the database does the arithmetic: ``UPDATE … SET used = used + n WHERE used + n <= limit`` and
  the row count says whether it fit; nothing is read into Python, changed and written back;
- a pool's limit is split over ``stripes`` rows per period. A grant of one unit tries one stripe
  chosen at random, then the others that still have room, so 32 concurrent clients update
  different rows instead of queueing on one hot row; the stripes' limits add up to the pool's, so
  the pool can never be overspent;
- a transaction waits for a stripe only when it takes all of a pool's stripes, in key order (to
  move room between them, or for a batch no single free stripe has room for); otherwise it picks
  a stripe no one holds (``SKIP LOCKED``). A transaction that already holds one stripe and then
  needs all of them can meet another doing the same: PostgreSQL reports the deadlock and the
  campaign executor retries its batch. Every flow takes its locks in one order: the key it claims (holding, order),
  then cap rows (in customer order), then stripes (pools in id order) — so no cycle can form;
- every row also carries a CHECK constraint (``used <= limit``, ``n >= 0``): a mistake here would
  fail loudly in the database rather than overspend.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bankgrowth.errors import Invalid
from bankgrowth.rights.models import NO_PERIOD, CapCounter, Pool, PoolStripe

PERIODS = ("none", "day", "week", "month")


def period_start(period: str, at: datetime, timezone: str) -> date:
    """The first day of the period holding ``at``, in the bank's timezone (weeks start on Monday)."""
    if period == "none":
        return NO_PERIOD
    day = at.astimezone(ZoneInfo(timezone)).date()
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise Invalid(f"unknown period {period!r}: expected one of {PERIODS}", f"未知周期 {period!r}", code="bad_period")


def dialect_insert(session: Session) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update/nothing`` (SQLite and PostgreSQL)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def split(total: int | None, parts: int) -> list[int | None]:
    """``total`` spread over ``parts`` stripes as evenly as integers allow (``None``: no limit)."""
    if total is None:
        return [None] * parts
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def ensure_stripes(session: Session, pool: Pool, period: date) -> None:
    """Create the pool's stripes for ``period`` if they are not there (idempotent under races)."""
    units, fen = split(pool.limit_units, pool.stripes), split(pool.limit_fen, pool.stripes)
    rows = [
        {"pool_id": pool.id, "period_start": period, "stripe": i, "limit_units": units[i], "limit_fen": fen[i]}
        for i in range(pool.stripes)
    ]
    session.execute(dialect_insert(session)(PoolStripe).values(rows).on_conflict_do_nothing())


def _fits(units: int, fen: int) -> Any:
    return and_(
        or_(PoolStripe.limit_units.is_(None), PoolStripe.used_units + units <= PoolStripe.limit_units),
        or_(PoolStripe.limit_fen.is_(None), PoolStripe.used_fen + fen <= PoolStripe.limit_fen),
    )


def _add(session: Session, pool_id: int, period: date, stripe: int, units: int, fen: int) -> bool:
    result = session.execute(
        update(PoolStripe)
        .where(
            PoolStripe.pool_id == pool_id,
            PoolStripe.period_start == period,
            PoolStripe.stripe == stripe,
            _fits(units, fen),
        )
        .values(used_units=PoolStripe.used_units + units, used_fen=PoolStripe.used_fen + fen)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _add_to_a_free_stripe(session: Session, pool: Pool, period: date, units: int, fen: int) -> bool:
    """One statement: spend on a stripe with room that no other transaction holds (``SKIP LOCKED``),
    starting the search at a random stripe. It never waits, so it can never be part of a lock cycle.
    (A conditional UPDATE that waits for a row and then finds no room keeps the row locked in
    PostgreSQL; waiting on stripes in random order is what deadlocks.)"""
    offset = random.randrange(pool.stripes)
    free = (
        select(PoolStripe.stripe)
        .where(PoolStripe.pool_id == pool.id, PoolStripe.period_start == period, _fits(units, fen))
        .order_by((PoolStripe.stripe + offset) % pool.stripes)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = session.execute(
        update(PoolStripe)
        .where(PoolStripe.pool_id == pool.id, PoolStripe.period_start == period, PoolStripe.stripe == free)
        .values(used_units=PoolStripe.used_units + units, used_fen=PoolStripe.used_fen + fen)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def take(session: Session, pool: Pool, period: date, *, units: int, fen: int) -> bool:
    """Spend ``units`` and ``fen`` of the pool in ``period`` if they fit; ``False`` if not.

    First on any free stripe with room, without waiting; when every stripe with room is busy, or
    none has room by itself, all stripes are locked in key order and the pool's total decides."""
    if units == 0 and fen == 0:
        return True
    if _add_to_a_free_stripe(session, pool, period, units, fen):
        return True
    present, room_units, room_fen = session.execute(
        select(
            func.count(),
            func.sum(PoolStripe.limit_units - PoolStripe.used_units),
            func.sum(PoolStripe.limit_fen - PoolStripe.used_fen),
        ).where(PoolStripe.pool_id == pool.id, PoolStripe.period_start == period)
    ).one()
    if not present:
        ensure_stripes(session, pool, period)
        if _add_to_a_free_stripe(session, pool, period, units, fen):
            return True
    elif (room_units is not None and room_units < units) or (room_fen is not None and room_fen < fen):
        return False  # the pool as last committed has no room: answer without waiting for any lock
    return _rebalance_and_add(session, pool, period, units, fen)


def _locked_stripes(session: Session, pool_id: int, period: date) -> list[PoolStripe]:
    return list(
        session.scalars(
            select(PoolStripe)
            .where(PoolStripe.pool_id == pool_id, PoolStripe.period_start == period)
            .order_by(PoolStripe.stripe)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def _free(pairs: list[tuple[int | None, int]]) -> int | None:
    """Room left over (limit, used) pairs; ``None`` when there is no limit."""
    if any(limit is None for limit, _ in pairs):
        return None
    return sum(int(limit or 0) - used for limit, used in pairs)


def lock(session: Session, pool: Pool, period: date) -> None:
    """Lock all of a pool's stripes in ``period`` (key order), creating them if needed: a transaction
    that will update several stripes takes every lock first, so two such cannot wait on each other."""
    if not _locked_stripes(session, pool.id, period):
        ensure_stripes(session, pool, period)
        _locked_stripes(session, pool.id, period)


def _rebalance_and_add(session: Session, pool: Pool, period: date, units: int, fen: int) -> bool:
    """No single stripe has room: lock them all (in key order), and if the pool as a whole has room,
    gather it into one stripe and spend there. The stripes' limits still add up to the same total."""
    stripes = _locked_stripes(session, pool.id, period)
    if not stripes:
        return False
    free_units = _free([(s.limit_units, s.used_units) for s in stripes])
    free_fen = _free([(s.limit_fen, s.used_fen) for s in stripes])
    if (free_units is not None and free_units < units) or (free_fen is not None and free_fen < fen):
        return False
    target = stripes[0]
    for s in stripes[1:]:
        if s.limit_units is not None:
            moved = s.limit_units - s.used_units
            s.limit_units -= moved
            target.limit_units += moved  # type: ignore[operator]
        if s.limit_fen is not None:
            moved = s.limit_fen - s.used_fen
            s.limit_fen -= moved
            target.limit_fen += moved  # type: ignore[operator]
    session.flush()
    return _add(session, pool.id, period, target.stripe, units, fen)


def take_up_to(session: Session, pool: Pool, period: date, *, count: int, units_each: int, fen_each: int) -> int:
    """Spend room for as many as possible of ``count`` equal grants (a batch); returns how many fit.

    First the whole batch on one free stripe with room for it, without waiting (as a single grant
    does), so two batches of one pool — a campaign's parallel executors — hold different stripes
    and do not queue on each other until their commits. When no free stripe has that room (the
    pool is nearly spent, or every such stripe is busy), the stripes are locked in key order and
    the room is taken stripe by stripe, each update still conditional, so a concurrent single
    grant sees a consistent counter."""
    if count <= 0:
        return 0
    if units_each == 0 and fen_each == 0:
        return count
    if _add_to_a_free_stripe(session, pool, period, count * units_each, count * fen_each):
        return count
    stripes = _locked_stripes(session, pool.id, period)
    if not stripes:
        ensure_stripes(session, pool, period)
        stripes = _locked_stripes(session, pool.id, period)
    left = count
    for s in stripes:
        fit = left
        if s.limit_units is not None and units_each:
            fit = min(fit, (s.limit_units - s.used_units) // units_each)
        if s.limit_fen is not None and fen_each:
            fit = min(fit, (s.limit_fen - s.used_fen) // fen_each)
        if fit > 0 and _add(session, pool.id, period, s.stripe, fit * units_each, fit * fen_each):
            left -= fit
        if left == 0:
            break
    while left and _rebalance_and_add(session, pool, period, units_each, fen_each):
        left -= 1
    return count - left


def give_back(session: Session, pool_id: int, period: date, *, units: int, fen: int) -> None:
    """Return spent room (a release, a revoke, a refused part of a batch) to the pool.

    Onto stripes that have spent something and that no other transaction holds (this transaction's
    own stripes included: the row is locked, so the amounts read are the amounts written), without
    waiting; only if every such stripe is busy are they locked in key order. The pool's total is
    what the limit guards."""
    if units == 0 and fen == 0:
        return
    for _ in range(64):  # a stripe at a time, never waiting for one another transaction holds
        row = session.execute(
            select(PoolStripe.stripe, PoolStripe.used_units, PoolStripe.used_fen)
            .where(
                PoolStripe.pool_id == pool_id,
                PoolStripe.period_start == period,
                (PoolStripe.used_units > 0) | (PoolStripe.used_fen > 0),
            )
            .order_by(PoolStripe.used_units.desc())
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            break
        back_units, back_fen = min(units, row.used_units), min(fen, row.used_fen)
        session.execute(
            update(PoolStripe)
            .where(PoolStripe.pool_id == pool_id, PoolStripe.period_start == period, PoolStripe.stripe == row.stripe)
            .values(used_units=PoolStripe.used_units - back_units, used_fen=PoolStripe.used_fen - back_fen)
            .execution_options(synchronize_session=False)
        )
        units, fen = units - back_units, fen - back_fen
        if units == 0 and fen == 0:
            return
    for s in _locked_stripes(session, pool_id, period):  # every stripe busy: wait, in key order
        s.used_units -= (back_units := min(units, s.used_units))
        s.used_fen -= (back_fen := min(fen, s.used_fen))
        units, fen = units - back_units, fen - back_fen
    session.flush()
    if units or fen:
        raise AssertionError(f"pool {pool_id} gave back more than it spent in {period}")


def raise_limit(session: Session, pool: Pool, period: date, *, units: int, fen: int) -> None:
    """Add room to the pool in ``period`` (an allocation from a parent pool)."""
    ensure_stripes(session, pool, period)
    values: dict[str, Any] = {}
    if units:
        values["limit_units"] = PoolStripe.limit_units + units
    if fen:
        values["limit_fen"] = PoolStripe.limit_fen + fen
    if values:
        session.execute(
            update(PoolStripe)
            .where(PoolStripe.pool_id == pool.id, PoolStripe.period_start == period, PoolStripe.stripe == 0)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` per customer under ``scope`` in each ``period``."""

    scope: str
    limit: int
    period: str = "none"


def count_in(session: Session, cap: Cap, period: date, customer_ids: list[str]) -> set[str]:
    """Count one more for each customer (distinct ids) that is still under the cap; returns those
    counted. One statement: an upsert whose update only applies while ``n + 1 <= limit``."""
    if not customer_ids:
        return set()
    stmt = dialect_insert(session)(CapCounter).values(
        [{"scope": cap.scope, "period_start": period, "customer_id": c, "n": 1} for c in customer_ids]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope", "period_start", "customer_id"],
        set_={"n": CapCounter.n + 1},
        where=CapCounter.n + 1 <= cap.limit,
    ).returning(CapCounter.customer_id)
    if cap.limit < 1:
        return set()
    return set(session.scalars(stmt))


def uncount(session: Session, scope: str, period: date, customer_ids: list[str]) -> None:
    """Take back one count per customer (a refused or revoked grant)."""
    for customer in customer_ids:
        session.execute(
            update(CapCounter)
            .where(CapCounter.scope == scope, CapCounter.period_start == period, CapCounter.customer_id == customer)
            .values(n=CapCounter.n - 1)
            .execution_options(synchronize_session=False)
        )
