"""The ledger: grant, reserve, commit, release, redeem, spend, expire, revoke, adjust — and the
reconciliation that proves every balance and every pool equals the sum of its entries.

Every function here runs inside the caller's transaction (``with session.begin():``) and only
flushes; the counters change in the database (``counters``), and every movement writes one
append-only ``LedgerEntry`` with a unique idempotency key. A retried request finds its first
result (status ``duplicate``) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from bankgrowth.errors import Conflict, Invalid, NotFound
from bankgrowth.operational import bulk
from bankgrowth.operational.base import utcnow
from bankgrowth.rights import counters
from bankgrowth.rights.counters import Cap
from bankgrowth.rights.models import CouponCode, Holding, LedgerEntry, Pool, PoolStripe, Reservation, Right

SourceType = Literal["campaign", "activity", "purchase", "manual"]
GrantStatus = Literal["granted", "duplicate", "capped", "exhausted", "no_code"]
DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class Source:
    """Why a movement happened: a campaign, an activity, a purchase (savings card) or a manual act."""

    type: SourceType
    id: str

    @classmethod
    def of(cls, row: Holding | Reservation) -> Source:
        """The source a holding or reservation was made for."""
        return cls(row.source_type, row.source_id)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GrantRequest:
    key: str
    customer_id: str
    quantity: int = 1


@dataclass(frozen=True)
class GrantResult:
    key: str
    customer_id: str
    status: GrantStatus
    holding_id: int | None = None


def write_entry(
    session: Session,
    *,
    key: str,
    kind: str,
    at: datetime,
    source: Source,
    actor: str,
    reason: str = "",
    **values: Any,
) -> None:
    session.add(
        LedgerEntry(
            idempotency_key=key,
            kind=kind,
            at=at,
            source_type=source.type,
            source_id=source.id,
            actor=actor,
            reason=reason,
            **values,
        )
    )


def _existing(session: Session, keys: Sequence[str]) -> dict[str, int | None]:
    """Holdings already granted under these keys (``grant_key`` is unique)."""
    found: dict[str, int | None] = {}
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        found.update(
            (key, holding_id)
            for key, holding_id in session.execute(
                select(Holding.grant_key, Holding.id).where(Holding.grant_key.in_(chunk))
            )
        )
    return found


def expiry_of(right: Right, at: datetime) -> datetime | None:
    if right.valid_days is not None:
        relative = at + timedelta(days=right.valid_days)
        return min(relative, right.valid_until) if right.valid_until else relative
    return right.valid_until


def _check_grantable(right: Right, pool: Pool, at: datetime) -> None:
    if not right.active:
        raise Conflict(f"right {right.code} is not active", f"权益 {right.code} 已停用", code="right_inactive")
    if not pool.active:
        raise Conflict(f"pool {pool.code} is not active", f"预算池 {pool.code} 已停用", code="pool_inactive")
    if right.valid_until is not None and right.valid_until <= at:
        raise Conflict(
            f"right {right.code} expired at {right.valid_until.isoformat()}",
            f"权益 {right.code} 已于 {right.valid_until.isoformat()} 过期",
            code="right_expired",
        )


def grant_many(
    session: Session,
    *,
    right: Right,
    pool: Pool,
    requests: Sequence[GrantRequest],
    source: Source,
    actor: str,
    reason: str = "",
    caps: Sequence[Cap] = (),
    at: datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> list[GrantResult]:
    """Grant ``right`` from ``pool`` to each request's customer, in the caller's transaction.

    Each request gets one result, in order: ``granted`` (with its holding), ``duplicate`` (its key was
    granted before: the first holding, nothing changed), ``capped`` (a per-customer cap), ``exhausted``
    (the pool's limit in this period) or ``no_code`` (a coupon right with no free code left).
    A batch costs a handful of statements, whatever its size: this is how campaigns grant quickly.
    """
    at = at or utcnow()
    _check_grantable(right, pool, at)
    for r in requests:
        if r.quantity < 1:
            raise Invalid(
                f"grant {r.key}: quantity must be at least 1, found {r.quantity}",
                f"发放 {r.key}：数量至少为 1，实际为 {r.quantity}",
                code="bad_quantity",
            )
    period = counters.period_start(pool.period, at, timezone)
    results: dict[int, GrantResult] = {}
    first_of_key: dict[str, int] = {}
    todo: list[int] = []
    for i, r in enumerate(requests):
        if r.key in first_of_key:
            results[i] = GrantResult(r.key, r.customer_id, "duplicate")  # given the holding at the end
        else:
            first_of_key[r.key] = i
            todo.append(i)

    # 1. claim the keys: insert the holdings first; a key granted before is not inserted again. A
    # concurrent retry of the same key waits here for the first to finish, before either holds a
    # budget lock, so no lock cycle can form. Rows are inserted in key order, so two batches sharing
    # keys wait for each other in one order.
    expires_at = expiry_of(right, at)
    order = sorted(todo, key=lambda i: requests[i].key)
    claimed: dict[str, int] = {}
    if order:
        quantities = [requests[i].quantity for i in order]
        holding: dict[str, list[Any] | bulk.Same] = {
            "grant_key": [requests[i].key for i in order],
            "customer_id": [requests[i].customer_id for i in order],
            "units": quantities,
            "remaining": quantities,
            "right_id": bulk.Same(right.id),
            "pool_id": bulk.Same(pool.id),
            "org_id": bulk.Same(pool.org_id),
            "status": bulk.Same("active"),
            "source_type": bulk.Same(source.type),
            "source_id": bulk.Same(source.id),
            "period_start": bulk.Same(period),
            "granted_at": bulk.Same(at),
            "expires_at": bulk.Same(expires_at),
        }
        inserted = bulk.insert_columns(session, Holding, holding, conflict=["grant_key"], returning=["grant_key", "id"])
        claimed = {key: hid for key, hid in inserted}
    lost = [i for i in todo if requests[i].key not in claimed]
    if lost:  # granted before, or meanwhile by a concurrent retry of the same key
        existing = _existing(session, [requests[i].key for i in lost])
        for i in lost:
            results[i] = GrantResult(
                requests[i].key, requests[i].customer_id, "duplicate", existing.get(requests[i].key)
            )
    todo = [i for i in todo if requests[i].key in claimed]
    refused: list[int] = []

    # 2. per-customer caps: one counting round per distinct customer (in id order); a customer twice
    # in one batch is counted again in a later round
    counted: list[tuple[str, date, list[int]]] = []
    for cap in caps:
        cap_period = counters.period_start(cap.period, at, timezone)
        pending, passed = list(todo), []
        while pending:
            seen: dict[str, int] = {}
            later: list[int] = []
            for i in pending:
                if requests[i].customer_id in seen:
                    later.append(i)
                else:
                    seen[requests[i].customer_id] = i
            ok = counters.count_in(session, cap, cap_period, sorted(seen))
            for customer, i in seen.items():
                if customer in ok:
                    passed.append(i)
                else:
                    results[i] = GrantResult(requests[i].key, requests[i].customer_id, "capped")
                    refused.append(i)
            pending = later
        counted.append((cap.scope, cap_period, passed))
        todo = sorted(passed)

    # 3. the budget
    granted = _take_budget(session, right, pool, period, [requests[i] for i in todo])
    for i in todo[granted:]:
        results[i] = GrantResult(requests[i].key, requests[i].customer_id, "exhausted")
        refused.append(i)
    todo = todo[:granted]

    # 4. coupon codes (rows another transaction is taking are skipped, not waited for)
    codes: dict[int, CouponCode] = {}
    if right.kind == "coupon_code" and todo:
        free = list(
            session.scalars(
                select(CouponCode)
                .where(CouponCode.right_id == right.id, CouponCode.holding_id.is_(None))
                .order_by(CouponCode.id)
                .limit(len(todo))
                .with_for_update(skip_locked=True)
            )
        )
        codes = dict(zip(todo, free, strict=False))
        for i in todo[len(free) :]:
            results[i] = GrantResult(requests[i].key, requests[i].customer_id, "no_code")
            refused.append(i)
            _give_back(session, right, pool, period, requests[i])
        todo = todo[: len(free)]

    # 5. undo what the refused requests counted and claimed; write the granted ones' entries
    refused_set = set(refused)
    for scope, cap_period, indexes in counted:
        undo = sorted(requests[i].customer_id for i in indexes if i in refused_set)
        if undo:
            counters.uncount(session, scope, cap_period, undo)
    if refused:
        ids = [claimed[requests[i].key] for i in refused]
        session.execute(delete(Holding).where(Holding.id.in_(ids)).execution_options(synchronize_session=False))
    for i, code in codes.items():
        code.holding_id = claimed[requests[i].key]
        session.execute(
            update(Holding)
            .where(Holding.id == code.holding_id)
            .values(code=code.code)
            .execution_options(synchronize_session=False)
        )
    for i in todo:
        r = requests[i]
        results[i] = GrantResult(r.key, r.customer_id, "granted", claimed[r.key])
    units = [requests[i].quantity for i in todo]
    fen = [q * right.unit_cost_fen for q in units]
    entries: dict[str, list[Any] | bulk.Same] = {
        "idempotency_key": [requests[i].key for i in todo],
        "customer_id": [requests[i].customer_id for i in todo],
        "holding_id": [claimed[requests[i].key] for i in todo],
        "units": units,
        "pool_units": units,
        "pool_fen": fen,
        "cost_fen": fen,
        "kind": bulk.Same("grant"),
        "at": bulk.Same(at),
        "right_id": bulk.Same(right.id),
        "pool_id": bulk.Same(pool.id),
        "period_start": bulk.Same(period),
        "org_id": bulk.Same(pool.org_id),
        "source_type": bulk.Same(source.type),
        "source_id": bulk.Same(source.id),
        "actor": bulk.Same(actor),
        "reason": bulk.Same(reason),
    }
    bulk.insert_columns(session, LedgerEntry, entries)
    session.flush()
    out = []
    for i, r in enumerate(requests):
        result = results[i]
        if result.status == "duplicate" and result.holding_id is None:
            result = GrantResult(r.key, r.customer_id, "duplicate", results[first_of_key[r.key]].holding_id)
        out.append(result)
    return out


def _take_budget(session: Session, right: Right, pool: Pool, period: date, requests: Sequence[GrantRequest]) -> int:
    """How many of ``requests`` (a prefix) the pool pays for; their room is spent."""
    if not requests:
        return 0
    if len(requests) == 1:
        r = requests[0]
        return int(counters.take(session, pool, period, units=r.quantity, fen=r.quantity * right.unit_cost_fen))
    quantities = {r.quantity for r in requests}
    if len(quantities) == 1:
        q = quantities.pop()
        return counters.take_up_to(
            session, pool, period, count=len(requests), units_each=q, fen_each=q * right.unit_cost_fen
        )
    counters.lock(session, pool, period)  # several takes in one transaction: all locks first, in order
    n = 0
    for r in requests:
        if not counters.take(session, pool, period, units=r.quantity, fen=r.quantity * right.unit_cost_fen):
            break
        n += 1
    return n


def _give_back(session: Session, right: Right, pool: Pool, period: date, request: GrantRequest) -> None:
    counters.give_back(session, pool.id, period, units=request.quantity, fen=request.quantity * right.unit_cost_fen)


def grant(
    session: Session,
    *,
    right: Right,
    pool: Pool,
    request: GrantRequest,
    source: Source,
    actor: str,
    reason: str = "",
    caps: Sequence[Cap] = (),
    at: datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> GrantResult:
    return grant_many(
        session,
        right=right,
        pool=pool,
        requests=[request],
        source=source,
        actor=actor,
        reason=reason,
        caps=caps,
        at=at,
        timezone=timezone,
    )[0]


# --- reservations -------------------------------------------------------------------------------


def reserve(
    session: Session,
    *,
    right: Right,
    pool: Pool,
    key: str,
    customer_id: str,
    quantity: int,
    ttl: timedelta,
    source: Source,
    actor: str,
    at: datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> Reservation | None:
    """Hold budget for a customer until ``commit`` or ``release`` (or the TTL passes); ``None`` if
    the pool has no room. The same key returns the same reservation."""
    at = at or utcnow()
    _check_grantable(right, pool, at)
    found = session.scalar(select(Reservation).where(Reservation.key == key))
    if found is not None:
        return found
    period = counters.period_start(pool.period, at, timezone)
    fen = quantity * right.unit_cost_fen
    if not counters.take(session, pool, period, units=quantity, fen=fen):
        return None
    reservation = Reservation(
        key=key,
        pool_id=pool.id,
        right_id=right.id,
        customer_id=customer_id,
        org_id=pool.org_id,
        units=quantity,
        fen=fen,
        period_start=period,
        status="held",
        source_type=source.type,
        source_id=source.id,
        created_at=at,
        expires_at=at + ttl,
    )
    session.add(reservation)
    session.flush()
    write_entry(
        session,
        key=f"reserve:{key}",
        kind="reserve",
        at=at,
        source=source,
        actor=actor,
        customer_id=customer_id,
        right_id=right.id,
        reservation_id=reservation.id,
        pool_id=pool.id,
        period_start=period,
        pool_units=quantity,
        pool_fen=fen,
        org_id=pool.org_id,
    )
    session.flush()
    return reservation


def _close(session: Session, reservation: Reservation, status: str) -> bool:
    """Move a held reservation to ``status``; ``False`` if it was not held any more (a race lost)."""
    result = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation.id, Reservation.status == "held")
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
    session.refresh(reservation)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def commit(session: Session, *, reservation: Reservation, actor: str, at: datetime | None = None) -> Holding | None:
    """Turn a held reservation into a holding; ``None`` if it was released or committed before."""
    at = at or utcnow()
    if not _close(session, reservation, "committed"):
        return None
    right = session.get_one(Right, reservation.right_id)
    source = Source.of(reservation)
    holding = Holding(
        customer_id=reservation.customer_id,
        right_id=right.id,
        pool_id=reservation.pool_id,
        org_id=reservation.org_id,
        units=reservation.units,
        remaining=reservation.units,
        status="active",
        source_type=source.type,
        source_id=source.id,
        grant_key=f"commit:{reservation.key}",
        period_start=reservation.period_start,
        granted_at=at,
        expires_at=expiry_of(right, at),
    )
    session.add(holding)
    session.flush()
    write_entry(
        session,
        key=f"commit:{reservation.key}",
        kind="grant",
        at=at,
        source=source,
        actor=actor,
        customer_id=reservation.customer_id,
        right_id=right.id,
        holding_id=holding.id,
        reservation_id=reservation.id,
        pool_id=reservation.pool_id,
        period_start=reservation.period_start,
        units=reservation.units,
        cost_fen=reservation.fen,
        org_id=reservation.org_id,
    )
    session.flush()
    return holding


def release(session: Session, *, reservation: Reservation, actor: str, reason: str, at: datetime | None = None) -> bool:
    """Give a held reservation's budget back; ``False`` if it was not held any more."""
    at = at or utcnow()
    if not _close(session, reservation, "released"):
        return False
    counters.give_back(
        session, reservation.pool_id, reservation.period_start, units=reservation.units, fen=reservation.fen
    )
    write_entry(
        session,
        key=f"release:{reservation.key}",
        kind="release",
        at=at,
        source=Source.of(reservation),
        actor=actor,
        reason=reason,
        customer_id=reservation.customer_id,
        right_id=reservation.right_id,
        reservation_id=reservation.id,
        pool_id=reservation.pool_id,
        period_start=reservation.period_start,
        pool_units=-reservation.units,
        pool_fen=-reservation.fen,
        org_id=reservation.org_id,
    )
    session.flush()
    return True


def release_expired(session: Session, *, actor: str, now: datetime | None = None, limit: int = 10_000) -> int:
    """Release every held reservation whose TTL has passed; returns how many."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(Reservation)
            .where(Reservation.status == "held", Reservation.expires_at <= now)
            .order_by(Reservation.id)
            .limit(limit)
        )
    )
    return sum(release(session, reservation=r, actor=actor, reason="reservation expired", at=now) for r in due)


# --- redemption, spending, expiry, revocation ---------------------------------------------------


@dataclass(frozen=True)
class Redemption:
    key: str
    holding_id: int
    units: int
    status: Literal["redeemed", "duplicate"]


def find_entry(session: Session, key: str) -> LedgerEntry | None:
    return session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))


def redeem(
    session: Session,
    *,
    holding: Holding,
    key: str,
    units: int = 1,
    actor: str,
    reason: str = "",
    source: Source | None = None,
    at: datetime | None = None,
) -> Redemption:
    """The payment side reports ``units`` of a holding used. Idempotent on ``key``."""
    at = at or utcnow()
    before = find_entry(session, key)
    if before is not None:
        return Redemption(key, before.holding_id or holding.id, -before.units, "duplicate")
    result = session.execute(
        update(Holding)
        .where(
            Holding.id == holding.id,
            Holding.status == "active",
            Holding.remaining >= units,
            (Holding.expires_at.is_(None)) | (Holding.expires_at > at),
        )
        .values(
            remaining=Holding.remaining - units,
            status=case((Holding.remaining - units == 0, "redeemed"), else_="active"),
        )
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        before = find_entry(session, key)  # a concurrent retry of the same key may have won
        if before is not None:
            return Redemption(key, holding.id, -before.units, "duplicate")
        session.refresh(holding)
        raise Conflict(
            f"holding {holding.id} cannot be redeemed: status {holding.status}, {holding.remaining} left"
            + (f", expires {holding.expires_at.isoformat()}" if holding.expires_at else ""),
            f"权益 {holding.id} 无法核销：状态 {holding.status}，剩余 {holding.remaining}",
            code="not_redeemable",
            details={"status": holding.status, "remaining": holding.remaining},
        )
    right = session.get_one(Right, holding.right_id)
    write_entry(
        session,
        key=key,
        kind="redeem",
        at=at,
        source=source or Source.of(holding),
        actor=actor,
        reason=reason,
        customer_id=holding.customer_id,
        right_id=holding.right_id,
        holding_id=holding.id,
        pool_id=holding.pool_id,
        units=-units,
        cost_fen=units * (right.face_value_fen or 0),
        org_id=holding.org_id,
    )
    session.flush()
    session.refresh(holding)
    return Redemption(key, holding.id, units, "redeemed")


def spend(
    session: Session,
    *,
    customer_id: str,
    right: Right,
    units: int,
    key: str,
    actor: str,
    reason: str = "",
    at: datetime | None = None,
) -> list[Redemption]:
    """Spend ``units`` of points or coins from a customer's lots, soonest expiry first."""
    at = at or utcnow()
    if find_entry(session, f"{key}#0") is not None:
        return [
            Redemption(e.idempotency_key, e.holding_id or 0, -e.units, "duplicate")
            for e in session.scalars(select(LedgerEntry).where(LedgerEntry.idempotency_key.startswith(f"{key}#")))
        ]
    lots = list(
        session.scalars(
            select(Holding)
            .where(
                Holding.customer_id == customer_id,
                Holding.right_id == right.id,
                Holding.status == "active",
                (Holding.expires_at.is_(None)) | (Holding.expires_at > at),
            )
            .order_by(Holding.expires_at.is_(None), Holding.expires_at, Holding.id)
            .with_for_update()
        )
    )
    if sum(lot.remaining for lot in lots) < units:
        raise Conflict(
            f"customer {customer_id} holds {sum(lot.remaining for lot in lots)} {right.code}, needs {units}",
            f"客户 {customer_id} 持有 {right.code} {sum(lot.remaining for lot in lots)}，需要 {units}",
            code="insufficient_balance",
        )
    out, left = [], units
    for n, lot in enumerate(lots):
        if left == 0:
            break
        part = min(left, lot.remaining)
        out.append(redeem(session, holding=lot, key=f"{key}#{n}", units=part, actor=actor, reason=reason, at=at))
        left -= part
    return out


def expire_due(session: Session, *, actor: str, now: datetime | None = None, limit: int = 10_000) -> int:
    """Expire every active holding past its expiry; returns how many."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(Holding)
            .where(Holding.status == "active", Holding.expires_at.is_not(None), Holding.expires_at <= now)
            .order_by(Holding.id)
            .limit(limit)
        )
    )
    n = 0
    for holding in due:
        left = holding.remaining
        result = session.execute(
            update(Holding)
            .where(Holding.id == holding.id, Holding.status == "active", Holding.remaining == left)
            .values(status="expired", remaining=0)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            continue
        write_entry(
            session,
            key=f"expire:{holding.id}",
            kind="expire",
            at=now,
            source=Source.of(holding),
            actor=actor,
            reason="validity ended",
            customer_id=holding.customer_id,
            right_id=holding.right_id,
            holding_id=holding.id,
            pool_id=holding.pool_id,
            units=-left,
            org_id=holding.org_id,
        )
        n += 1
    session.flush()
    return n


def revoke(
    session: Session, *, holding: Holding, key: str, actor: str, reason: str, at: datetime | None = None
) -> bool:
    """Take back what is left of an active holding and return its budget to the pool (the period it
    was spent in). ``False`` if nothing was left to revoke."""
    at = at or utcnow()
    if find_entry(session, key) is not None:
        return False
    left = holding.remaining
    result = session.execute(
        update(Holding)
        .where(Holding.id == holding.id, Holding.status == "active", Holding.remaining == left)
        .values(status="revoked", remaining=0)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount or left == 0:  # type: ignore[attr-defined]
        return False
    right = session.get_one(Right, holding.right_id)
    fen = left * right.unit_cost_fen
    if holding.pool_id is not None and holding.period_start is not None:
        counters.give_back(session, holding.pool_id, holding.period_start, units=left, fen=fen)
    write_entry(
        session,
        key=key,
        kind="revoke",
        at=at,
        source=Source.of(holding),
        actor=actor,
        reason=reason,
        customer_id=holding.customer_id,
        right_id=holding.right_id,
        holding_id=holding.id,
        pool_id=holding.pool_id,
        period_start=holding.period_start,
        units=-left,
        pool_units=-left if holding.pool_id is not None else 0,
        pool_fen=-fen if holding.pool_id is not None else 0,
        cost_fen=-fen,
        org_id=holding.org_id,
    )
    session.flush()
    session.refresh(holding)
    return True


def adjust(
    session: Session, *, holding: Holding, units: int, key: str, actor: str, reason: str, at: datetime | None = None
) -> bool:
    """A manual correction of a points or coins lot (positive or negative); the pool is unchanged."""
    at = at or utcnow()
    if not reason.strip():
        raise Invalid("an adjustment needs a reason", "调整必须填写原因", code="reason_required")
    if find_entry(session, key) is not None:
        return False
    result = session.execute(
        update(Holding)
        .where(
            Holding.id == holding.id,
            Holding.status == "active",
            Holding.remaining + units >= 0,
            Holding.remaining + units <= Holding.units + max(units, 0),
        )
        .values(remaining=Holding.remaining + units, units=Holding.units + max(units, 0))
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict(
            f"holding {holding.id} cannot be adjusted by {units}",
            f"权益 {holding.id} 无法调整 {units}",
            code="bad_adjust",
        )
    write_entry(
        session,
        key=key,
        kind="adjust",
        at=at,
        source=Source("manual", actor),
        actor=actor,
        reason=reason,
        customer_id=holding.customer_id,
        right_id=holding.right_id,
        holding_id=holding.id,
        units=units,
        org_id=holding.org_id,
    )
    session.flush()
    session.refresh(holding)
    return True


def wallet(session: Session, *, customer_id: str, include_closed: bool = False) -> list[Holding]:
    stmt = select(Holding).where(Holding.customer_id == customer_id)
    if not include_closed:
        stmt = stmt.where(Holding.status == "active")
    return list(session.scalars(stmt.order_by(Holding.expires_at.is_(None), Holding.expires_at, Holding.id)))


def get_holding_or_raise(session: Session, *, holding_id: int) -> Holding:
    holding = session.get(Holding, holding_id)
    if holding is None:
        raise NotFound(f"no holding {holding_id}", f"没有权益持有记录 {holding_id}", code="holding_not_found")
    return holding


# --- reconciliation -----------------------------------------------------------------------------


@dataclass
class Reconciliation:
    """What ``reconcile`` checked and every difference it found (empty ``problems``: clean)."""

    holdings: int = 0
    pools: int = 0
    periods: int = 0
    reservations: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def reconcile(session: Session) -> Reconciliation:
    """Prove every holding's balance equals its ledger sum, every pool period's used counters equal
    the ledger's pool movements, no counter is below zero or above its limit, the stripes' limits add
    up to the pool's, held reservations match their entries, and no coupon code is given twice."""
    report = Reconciliation()
    report.entries = session.scalar(select(func.count()).select_from(LedgerEntry)) or 0
    sums: dict[int | None, int] = dict(
        (k, v)
        for k, v in session.execute(
            select(LedgerEntry.holding_id, func.sum(LedgerEntry.units))
            .where(LedgerEntry.holding_id.is_not(None))
            .group_by(LedgerEntry.holding_id)
        )
    )
    for holding_id, remaining, status in session.execute(select(Holding.id, Holding.remaining, Holding.status)):
        report.holdings += 1
        total = int(sums.pop(holding_id, 0) or 0)
        if total != remaining:
            report.problems.append(f"holding {holding_id}: remaining {remaining}, ledger sum {total}")
        if status == "active" and remaining == 0:
            report.problems.append(f"holding {holding_id}: active with nothing left")
    for orphan in sums:
        report.problems.append(f"ledger entries name holding {orphan}, which does not exist")

    moved = {
        (pool_id, period): (int(units or 0), int(fen or 0))
        for pool_id, period, units, fen in session.execute(
            select(
                LedgerEntry.pool_id,
                LedgerEntry.period_start,
                func.sum(LedgerEntry.pool_units),
                func.sum(LedgerEntry.pool_fen),
            )
            .where(LedgerEntry.pool_id.is_not(None), LedgerEntry.period_start.is_not(None))
            .group_by(LedgerEntry.pool_id, LedgerEntry.period_start)
        )
    }
    pools = {p.id: p for p in session.scalars(select(Pool))}
    report.pools = len(pools)
    used = session.execute(
        select(
            PoolStripe.pool_id,
            PoolStripe.period_start,
            func.sum(PoolStripe.used_units),
            func.sum(PoolStripe.used_fen),
            func.sum(PoolStripe.limit_units),
            func.sum(PoolStripe.limit_fen),
            func.min(PoolStripe.used_units),
            func.min(PoolStripe.used_fen),
            func.count(),
        ).group_by(PoolStripe.pool_id, PoolStripe.period_start)
    ).all()
    for pool_id, period, used_units, used_fen, limit_units, limit_fen, min_units, min_fen, n in used:
        report.periods += 1
        pool = pools[pool_id]
        ledger_units, ledger_fen = moved.pop((pool_id, period), (0, 0))
        where = f"pool {pool.code} period {period.isoformat()}"
        if (int(used_units), int(used_fen)) != (ledger_units, ledger_fen):
            report.problems.append(
                f"{where}: used {used_units} units / {used_fen} fen, ledger {ledger_units} / {ledger_fen}"
            )
        if min_units < 0 or min_fen < 0:
            report.problems.append(f"{where}: a stripe is below zero")
        if limit_units is not None and used_units > limit_units:
            report.problems.append(f"{where}: {used_units} units used over a limit of {limit_units}")
        if limit_fen is not None and used_fen > limit_fen:
            report.problems.append(f"{where}: {used_fen} fen used over a limit of {limit_fen}")
        if n != pool.stripes:
            report.problems.append(f"{where}: {n} stripes, the pool has {pool.stripes}")
        if pool.limit_units is not None and limit_units != pool.limit_units:
            report.problems.append(f"{where}: stripes' limits add to {limit_units}, the pool's is {pool.limit_units}")
        if pool.limit_fen is not None and limit_fen != pool.limit_fen:
            report.problems.append(f"{where}: stripes' fen limits add to {limit_fen}, the pool's is {pool.limit_fen}")
    for (lone_pool, lone_period), (units, fen) in moved.items():
        if units or fen:
            report.problems.append(f"ledger moves pool {lone_pool} in {lone_period} but it has no counters")

    held: dict[int | None, int] = dict(
        (k, v)
        for k, v in session.execute(
            select(LedgerEntry.reservation_id, func.sum(LedgerEntry.pool_units))
            .where(LedgerEntry.reservation_id.is_not(None))
            .group_by(LedgerEntry.reservation_id)
        )
    )
    for reservation in session.scalars(select(Reservation)):
        report.reservations += 1
        expected = reservation.units if reservation.status in ("held", "committed") else 0
        if int(held.get(reservation.id, 0) or 0) != expected:
            report.problems.append(
                f"reservation {reservation.key} ({reservation.status}): "
                f"ledger holds {held.get(reservation.id, 0)}, expected {expected}"
            )
    twice = session.execute(
        select(Holding.right_id, Holding.code, func.count())
        .where(Holding.code.is_not(None))
        .group_by(Holding.right_id, Holding.code)
        .having(func.count() > 1)
    ).all()
    for right_id, code, n in twice:
        report.problems.append(f"coupon code {code} of right {right_id} is held {n} times")
    return report
