"""The rights catalog and the budget pools: create, read, allocate, import coupon codes, and the
grant, redeem, revoke and wallet operations a person or a channel calls (checked and audited).

Campaign execution calls ``ledger.grant_many`` directly, in its own transaction, with its batches.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from bankgrowth.errors import Conflict, Invalid, NotFound
from bankgrowth.operational.base import utcnow
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.service import in_scope_org, owned_by_scope
from bankgrowth.rights import counters, ledger
from bankgrowth.rights.counters import Cap
from bankgrowth.rights.ledger import GrantRequest, GrantResult, Redemption, Source
from bankgrowth.rights.models import CouponCode, Holding, Pool, PoolStripe, Right
from bankgrowth.rights.schemas import Allocation, CodesImport, GrantCreate, PoolCreate, RightCreate

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud and typed


def _snapshot(obj: object, fields: Sequence[str]) -> dict[str, object]:
    return {f: getattr(obj, f) for f in fields}


# --- catalog ------------------------------------------------------------------------------------


def create_right(session: Session, *, principal: Principal, data: RightCreate) -> Right:
    principal.require(Permission.WRITE)
    org = in_scope_org(session, principal, data.org_id or principal.scope.org_id)
    if session.scalar(select(Right.id).where(Right.code == data.code)) is not None:
        raise Conflict(f"right {data.code} exists", f"权益 {data.code} 已存在", code="right_exists")
    right = Right(**data.model_dump(exclude={"org_id", "kind"}), kind=data.kind.value, org_id=org.id)
    session.add(right)
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="rights.create",
        object_type="right",
        object_id=right.id,
        org_id=org.id,
        after=data.model_dump(),
    )
    return right


def list_rights(session: Session, *, principal: Principal) -> list[Right]:
    """Rights owned by the caller's subtree and those owned by its ancestors (HQ's catalog is
    available to every branch)."""
    principal.require(Permission.READ)
    stmt = select(Right).order_by(Right.code)
    if not principal.scope.is_root:
        stmt = stmt.where(Right.org_id.in_(principal.scope.ancestor_ids | (principal.scope.org_ids or frozenset())))
    return list(session.scalars(stmt))


def get_right_or_raise(session: Session, *, principal: Principal, code: str) -> Right:
    principal.require(Permission.READ)
    right = session.scalar(select(Right).where(Right.code == code))
    if right is None or not principal.scope.shares(right.org_id):
        raise NotFound(f"no right {code}", f"没有权益 {code}", code="right_not_found")
    return right


def add_codes(session: Session, *, principal: Principal, code: str, data: CodesImport) -> tuple[int, int]:
    """Import codes (and/or generate random ones) for a coupon_code right. Returns (added, already
    present); a code already in the right is reported, not added twice."""
    principal.require(Permission.WRITE)
    right = get_right_or_raise(session, principal=principal, code=code)
    if right.kind != "coupon_code":
        raise Invalid(
            f"right {code} is a {right.kind}, not a coupon_code", f"权益 {code} 不是券码类", code="not_coupon"
        )
    wanted = [c.strip() for c in data.codes if c.strip()]
    bad = [c for c in wanted if len(c) > 64]
    if bad:
        raise Invalid(f"codes longer than 64 characters: {bad[:3]}", "券码长度超过 64 个字符", code="bad_code")
    wanted += ["".join(secrets.choice(CODE_ALPHABET) for _ in range(12)) for _ in range(data.generate)]
    unique = list(dict.fromkeys(wanted))
    present: set[str] = set()
    for i in range(0, len(unique), 1000):
        chunk = unique[i : i + 1000]
        present |= set(
            session.scalars(select(CouponCode.code).where(CouponCode.right_id == right.id, CouponCode.code.in_(chunk)))
        )
    new = [c for c in unique if c not in present]
    if new:
        session.execute(insert(CouponCode), [{"right_id": right.id, "code": c} for c in new])
    audit.record(
        session,
        principal=principal,
        action="rights.codes",
        object_type="right",
        object_id=right.id,
        org_id=right.org_id,
        after={"added": len(new), "already_present": len(wanted) - len(new)},
    )
    return len(new), len(wanted) - len(new)


# --- pools --------------------------------------------------------------------------------------


def create_pool(session: Session, *, principal: Principal, data: PoolCreate) -> Pool:
    principal.require(Permission.WRITE)
    org = in_scope_org(session, principal, data.org_id or principal.scope.org_id)
    if session.scalar(select(Pool.id).where(Pool.code == data.code)) is not None:
        raise Conflict(f"pool {data.code} exists", f"预算池 {data.code} 已存在", code="pool_exists")
    pool = Pool(**data.model_dump(exclude={"org_id", "period"}), period=data.period.value, org_id=org.id)
    session.add(pool)
    session.flush()
    if pool.period == "none":
        counters.ensure_stripes(session, pool, counters.period_start("none", utcnow(), "UTC"))
    audit.record(
        session,
        principal=principal,
        action="pools.create",
        object_type="pool",
        object_id=pool.id,
        org_id=org.id,
        after=data.model_dump(),
    )
    return pool


def list_pools(session: Session, *, principal: Principal) -> list[Pool]:
    principal.require(Permission.READ)
    return list(session.scalars(owned_by_scope(select(Pool).order_by(Pool.code), Pool.org_id, principal)))


def get_pool_or_raise(session: Session, *, principal: Principal, code: str) -> Pool:
    principal.require(Permission.READ)
    pool = session.scalar(select(Pool).where(Pool.code == code))
    if pool is None or not principal.scope.allows(pool.org_id):
        raise NotFound(f"no pool {code}", f"没有预算池 {code}", code="pool_not_found")
    return pool


@dataclass(frozen=True)
class Usage:
    pool: Pool
    period_start: date
    used_units: int
    used_fen: int
    left_units: int | None
    left_fen: int | None


def usage(session: Session, *, pool: Pool, at: datetime | None = None, timezone: str = "Asia/Shanghai") -> Usage:
    """What the pool has spent and has left in the period holding ``at``."""
    period = counters.period_start(pool.period, at or utcnow(), timezone)
    used_units, used_fen, limit_units, limit_fen = session.execute(
        select(
            func.coalesce(func.sum(PoolStripe.used_units), 0),
            func.coalesce(func.sum(PoolStripe.used_fen), 0),
            func.sum(PoolStripe.limit_units),
            func.sum(PoolStripe.limit_fen),
        ).where(PoolStripe.pool_id == pool.id, PoolStripe.period_start == period)
    ).one()
    if limit_units is None and pool.limit_units is not None and not used_units:
        limit_units = pool.limit_units  # no grant yet in this period: its stripes are made at the first
    if limit_fen is None and pool.limit_fen is not None and not used_fen:
        limit_fen = pool.limit_fen
    return Usage(
        pool,
        period,
        int(used_units),
        int(used_fen),
        None if limit_units is None else int(limit_units) - int(used_units),
        None if limit_fen is None else int(limit_fen) - int(used_fen),
    )


def allocate(session: Session, *, principal: Principal, pool: Pool, data: Allocation) -> Pool:
    """HQ gives part of a pool's budget to a branch pool: the parent spends it (a ledger entry), the
    child's limit grows by it. Both pools must be without periodic resets."""
    principal.require(Permission.WRITE)
    child = get_pool_or_raise(session, principal=principal, code=data.to_pool)
    if child.id == pool.id or pool.period != "none" or child.period != "none":
        raise Invalid(
            "allocation goes from one pool to another, both without periodic resets",
            "分配只能在两个不按周期重置的预算池之间进行",
            code="bad_allocation",
        )
    if (data.units and child.limit_units is None) or (data.fen and child.limit_fen is None):
        raise Invalid("the receiving pool has no limit of that kind", "接收预算池没有该类限额", code="bad_allocation")
    key = f"allocate:{data.key}"
    if ledger.find_entry(session, key) is not None:
        audit.record(
            session,
            principal=principal,
            action="pools.allocate",
            object_type="pool",
            object_id=pool.id,
            org_id=pool.org_id,
            outcome="duplicate",
            after={"to": child.code, "units": data.units, "fen": data.fen, "key": data.key},
        )
        return child
    period = counters.NO_PERIOD
    if not counters.take(session, pool, period, units=data.units, fen=data.fen):
        raise Conflict(
            f"pool {pool.code} has not {data.units} units / {data.fen} fen left",
            f"预算池 {pool.code} 余额不足",
            code="pool_exhausted",
        )
    counters.raise_limit(session, child, period, units=data.units, fen=data.fen)
    child.parent_id = pool.id
    child.limit_units = None if child.limit_units is None else child.limit_units + data.units
    child.limit_fen = None if child.limit_fen is None else child.limit_fen + data.fen
    ledger.write_entry(
        session,
        key=key,
        kind="adjust",
        at=utcnow(),
        source=Source("manual", principal.actor),
        actor=principal.actor,
        reason=f"allocated to pool {child.code}",
        pool_id=pool.id,
        period_start=period,
        pool_units=data.units,
        pool_fen=data.fen,
        org_id=pool.org_id,
    )
    session.flush()
    audit.record(
        session,
        principal=principal,
        action="pools.allocate",
        object_type="pool",
        object_id=pool.id,
        org_id=pool.org_id,
        after={"to": child.code, "units": data.units, "fen": data.fen, "key": data.key},
    )
    return child


# --- grants, wallet, redemption -----------------------------------------------------------------


def grant(session: Session, *, principal: Principal, data: GrantCreate, timezone: str = "Asia/Shanghai") -> GrantResult:
    """One grant by a person or a channel: the pool must be the caller's, and the grant is audited."""
    principal.require(Permission.WRITE)
    right = get_right_or_raise(session, principal=principal, code=data.right)
    pool = get_pool_or_raise(session, principal=principal, code=data.pool)
    caps = [Cap(f"right:{right.id}", data.per_customer_limit)] if data.per_customer_limit else []
    result = ledger.grant(
        session,
        right=right,
        pool=pool,
        request=GrantRequest(data.key, data.customer_id, data.quantity),
        source=Source(data.source_type, data.source_id),  # type: ignore[arg-type]
        actor=principal.actor,
        reason=data.reason,
        caps=caps,
        timezone=timezone,
    )
    audit.record(  # a replay is recorded too (outcome duplicate): every accepted request leaves a trace
        session,
        principal=principal,
        action="rights.grant",
        object_type="holding",
        object_id=result.holding_id,
        org_id=pool.org_id,
        outcome="duplicate" if result.status == "duplicate" else "ok",
        after={
            "key": data.key,
            "right": right.code,
            "pool": pool.code,
            "customer": data.customer_id,
            "status": result.status,
        },
    )
    return result


def wallet(session: Session, *, principal: Principal, customer_id: str, include_closed: bool = False) -> list[Holding]:
    """A customer's holdings that the caller's scope owns (a branch sees what its pools granted)."""
    principal.require(Permission.READ)
    return [
        h
        for h in ledger.wallet(session, customer_id=customer_id, include_closed=include_closed)
        if principal.scope.allows(h.org_id)
    ]


def _holding_in_scope(session: Session, principal: Principal, holding_id: int) -> Holding:
    holding = session.get(Holding, holding_id)
    if holding is None or not principal.scope.allows(holding.org_id):
        raise NotFound(f"no holding {holding_id}", f"没有权益持有记录 {holding_id}", code="holding_not_found")
    return holding


def redeem(
    session: Session, *, principal: Principal, holding_id: int, units: int, key: str, reason: str = ""
) -> Redemption:
    """The payment side reports a voucher (or some points) used; idempotent on ``key``."""
    if not (principal.can(Permission.CHANNEL) or principal.can(Permission.WRITE)):
        principal.require(Permission.WRITE)
    holding = _holding_in_scope(session, principal, holding_id)
    return ledger.redeem(
        session, holding=holding, key=f"redeem:{key}", units=units, actor=principal.actor, reason=reason
    )


def revoke(session: Session, *, principal: Principal, holding_id: int, key: str, reason: str) -> Holding:
    principal.require(Permission.WRITE)
    holding = _holding_in_scope(session, principal, holding_id)
    before = _snapshot(holding, ("status", "remaining"))
    changed = ledger.revoke(session, holding=holding, key=f"revoke:{key}", actor=principal.actor, reason=reason)
    audit.record(
        session,
        principal=principal,
        action="rights.revoke",
        object_type="holding",
        object_id=holding.id,
        org_id=holding.org_id,
        outcome="ok" if changed else "unchanged",
        before=before,
        after=_snapshot(holding, ("status", "remaining")),
    )
    return holding
