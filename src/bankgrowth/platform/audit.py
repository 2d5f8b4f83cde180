"""The audit log: every mutating action writes one entry in the caller's transaction, so the
change and its record commit or roll back together. Entries are never updated or deleted."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bankgrowth.operational.base import utcnow
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.platform.models import AuditEntry


def jsonable(value: Any) -> Any:
    """Datetimes as ISO strings, Decimals as strings (exact), enums by value, sets sorted."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def record(
    session: Session,
    *,
    principal: Principal,
    action: str,
    object_type: str,
    object_id: str | int | None = None,
    org_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> AuditEntry:
    entry = AuditEntry(
        at=utcnow(),
        actor=principal.actor,
        actor_org_id=principal.scope.org_id,
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        org_id=org_id,
        source=principal.source,
        request_id=principal.request_id,
        before=jsonable(before),
        after=jsonable(after),
    )
    session.add(entry)
    session.flush()
    return entry


def query(
    session: Session,
    *,
    principal: Principal,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first. A branch auditor sees entries about its subtree or made by its subtree's people;
    HQ sees everything, including entries about no org (e.g. a failed login of an unknown name)."""
    principal.require(Permission.AUDIT)
    stmt = select(AuditEntry)
    ids = principal.scope.org_ids
    if ids is not None:
        stmt = stmt.where(or_(AuditEntry.org_id.in_(ids), AuditEntry.actor_org_id.in_(ids)))
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action:
        stmt = stmt.where(AuditEntry.action.startswith(action, autoescape=True))
    if object_type:
        stmt = stmt.where(AuditEntry.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditEntry.object_id == object_id)
    if request_id:
        stmt = stmt.where(AuditEntry.request_id == request_id)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until)
    return list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)))
