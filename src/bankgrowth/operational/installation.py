"""The operational store's own key: a random value written once, when the store is created.

Audience snapshots and campaign assignments live in the warehouse under ids the operational store
hands out (``audience_snapshots.id``, ``campaigns.id``). A warehouse used with a second, newer
store would meet the same ids again and mix two stores' members; the warehouse therefore records
the key of the store that writes into it (``audiences.store.pair``), and refuses another.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bankgrowth.operational.base import Base, utcnow


class Installation(Base):
    __tablename__ = "installation"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def new_key() -> str:
    return secrets.token_hex(16)


def key(session: Session) -> str:
    """This store's key (written by the migration that created the table; added here if missing)."""
    found = session.scalar(select(Installation.key).order_by(Installation.created_at).limit(1))
    if found is None:
        found = new_key()
        session.add(Installation(key=found))
        session.flush()
    return found
