"""Operational tables of audiences (客群): definitions with their versions, and snapshots.

The members themselves live in the warehouse beside the tags they were selected from (an uploaded
list's ids, a snapshot's customers): see :mod:`bankgrowth.audiences.store`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bankgrowth.operational.base import Base, utcnow


class Audience(Base):
    """A named audience: ``kind`` rule (a condition tree over tags and behaviour) or list (uploaded
    customer ids). ``version`` is the current definition's number."""

    __tablename__ = "audiences"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(400), default="")
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AudienceVersion(Base):
    """One definition of an audience, never changed once written: the rule (JSON and text) or, for
    a list, how many ids were uploaded and which were not customers."""

    __tablename__ = "audience_versions"
    __table_args__ = (UniqueConstraint("audience_id", "version", name="uq_audience_versions_audience_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"))
    version: Mapped[int]
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    text: Mapped[str | None] = mapped_column(Text)
    list_size: Mapped[int | None]
    unknown_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AudienceSnapshot(Base):
    """The members of an audience materialized at once: definition version, the tag version's
    as-of day, and the org subtree it was taken in. The member ids are in the warehouse."""

    __tablename__ = "audience_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), index=True)
    version: Mapped[int]
    as_of: Mapped[date]
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    members: Mapped[int]
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
