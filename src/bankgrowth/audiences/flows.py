"""Audience work that spans the two stores and so owns its transaction: a snapshot commits its
operational row, or the members it wrote to the warehouse are deleted again."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bankgrowth.audiences import service
from bankgrowth.audiences.models import AudienceSnapshot
from bankgrowth.platform.access import Principal

if TYPE_CHECKING:
    from ibis.backends import BaseBackend


def take_snapshot(
    session: Session,
    con: BaseBackend,
    *,
    principal: Principal,
    code: str,
    as_of: date | None = None,
    timezone: str = "Asia/Shanghai",
) -> AudienceSnapshot:
    """Snapshot ``code`` and commit ``session``; if the commit does not happen, the members already
    written under the snapshot's id are deleted, so no orphan set stays in the warehouse."""
    made: list[int] = []
    try:
        snap = service.snapshot(session, con, principal=principal, code=code, as_of=as_of, timezone=timezone)
        made.append(snap.id)
        session.commit()
    except BaseException:
        session.rollback()
        for snapshot_id in made:
            service.discard(con, snapshot_id)
        raise
    return snap
