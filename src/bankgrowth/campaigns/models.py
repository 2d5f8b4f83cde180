"""Operational tables of campaigns (营销活动) and reach (触达): definitions and their versions, the
execution state, the message outbox, and the contact rules (do-not-contact, the per-customer lock
that frequency caps are counted under).

Which customer is in which arm is recomputable from the salt and lives in the warehouse beside the
outcomes it is measured on (see :mod:`bankgrowth.campaigns.store`); grants are holdings in the
rights ledger, keyed by campaign, customer and right, so a rerun cannot grant twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bankgrowth.operational.base import Base, utcnow

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class Campaign(Base):
    """A campaign; ``version`` is the current definition's number. Status moves draft → pending
    approval → approved → running → finished (or rejected, back to editing)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(400), default="")
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    version: Mapped[int] = mapped_column(default=1)
    salt: Mapped[str] = mapped_column(String(64))
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("audience_snapshots.id"))
    created_by: Mapped[str] = mapped_column(String(80))
    submitted_by: Mapped[str | None] = mapped_column(String(80))
    approved_by: Mapped[str | None] = mapped_column(String(80))
    decision_comment: Mapped[str] = mapped_column(String(400), default="")
    launched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignVersion(Base):
    """One definition of a campaign (the JSON of ``schemas.Definition``), never changed once written."""

    __tablename__ = "campaign_versions"
    __table_args__ = (UniqueConstraint("campaign_id", "version", name="uq_campaign_versions_campaign_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    version: Mapped[int]
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Execution(Base):
    """How far a launched campaign's execution got. The treated customers are cut, in ascending id
    order, into batches (:class:`ExecutionBatch`); each batch is treated in one transaction that also
    marks it done and adds its counts here. A rerun after a crash treats the batches not marked done
    (and the ledger's and the outbox's keys make even a repeated batch harmless)."""

    __tablename__ = "campaign_executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running, done
    planned: Mapped[int] = mapped_column(BigInteger, default=0)  # audience members at launch
    control: Mapped[int] = mapped_column(BigInteger, default=0)
    treated: Mapped[int] = mapped_column(BigInteger, default=0)  # customers processed so far (treatment arms)
    granted: Mapped[int] = mapped_column(BigInteger, default=0)
    refused: Mapped[int] = mapped_column(BigInteger, default=0)  # capped, exhausted or out of codes
    messages: Mapped[int] = mapped_column(BigInteger, default=0)
    suppressed: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ExecutionBatch(Base):
    """One batch of an execution: the treated customers with ids from ``first_customer`` to
    ``last_customer``. Executors claim a batch not done by locking its row (``SKIP LOCKED``: two
    executors never wait for or repeat each other's batch) and mark it done in the batch's own
    transaction."""

    __tablename__ = "campaign_execution_batches"
    __table_args__ = (UniqueConstraint("execution_id", "batch_no", name="uq_campaign_execution_batches_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("campaign_executions.id"))
    batch_no: Mapped[int]
    first_customer: Mapped[int] = mapped_column(BigInteger)
    last_customer: Mapped[int] = mapped_column(BigInteger)
    customers: Mapped[int]
    done_at: Mapped[datetime | None]


class Message(Base):
    """One message to one customer: the outbox row the dispatcher sends, defers or suppresses.

    ``key`` is unique (campaign, customer, step), so enqueueing twice adds nothing. A message
    held back by a frequency cap or quiet hours is ``deferred`` with ``not_before``; it is sent when
    due, never dropped. One refused by consent or do-not-contact is ``suppressed`` with its reason.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_due", "status", "not_before"),
        Index("ix_messages_customer_sent", "customer_id", "sent_at"),
        Index("ix_messages_campaign", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    arm: Mapped[str] = mapped_column(String(32), default="")
    customer_id: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(24))
    lang: Mapped[str] = mapped_column(String(2), default="zh")
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    reason: Mapped[str] = mapped_column(String(64), default="")
    not_before: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    provider_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]


class ContactGuard(Base):
    """One row per contacted customer, locked while a message to them is decided: two dispatchers
    (two campaigns) can then never both see room under a cap and both send."""

    __tablename__ = "contact_guards"

    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_sent_at: Mapped[datetime | None]


class DoNotContact(Base):
    """A customer who must not be contacted on ``channel`` ('*': any channel), and why."""

    __tablename__ = "do_not_contact"
    __table_args__ = (UniqueConstraint("customer_id", "channel", name="uq_do_not_contact_customer_channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(24), default="*")
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
