"""Operational tables of rights (权益): the catalog, budget pools and their striped counters,
per-customer cap counters, holdings, reservations, the append-only ledger, and the savings card.

Money is integer fen. Every counter carries a CHECK constraint, so even a bug in the code could
not store a pool above its limit or a balance below zero: the database refuses the row.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bankgrowth.operational.base import Base, utcnow

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only

NO_PERIOD = date(2000, 1, 1)
"""The period start of a pool without resets: its counters live in this one period forever."""


class Right(Base):
    """One kind of thing a customer can be given. ``kind`` is coupon_code, voucher (立减金),
    points, coins (virtual coins) or gift (physical gift)."""

    __tablename__ = "rights"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(400), default="")
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    face_value_fen: Mapped[int | None]
    min_spend_fen: Mapped[int | None]
    institution: Mapped[str | None] = mapped_column(String(32))
    merchant: Mapped[str | None] = mapped_column(String(64))
    unit_cost_fen: Mapped[int] = mapped_column(default=0)
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    valid_days: Mapped[int | None]
    exclusivity_group: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponCode(Base):
    """A unique code of a coupon_code right; ``holding_id`` is set when the code is granted."""

    __tablename__ = "coupon_codes"
    __table_args__ = (
        UniqueConstraint("right_id", "code", name="uq_coupon_codes_right_code"),
        Index("ix_coupon_codes_free", "right_id", "holding_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    right_id: Mapped[int] = mapped_column(ForeignKey("rights.id"))
    code: Mapped[str] = mapped_column(String(64))
    holding_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class Pool(Base):
    """A budget: a limit in units and/or fen per period, owned by HQ or a branch.

    The limit is split over ``stripes`` counter rows per period (``PoolStripe``): concurrent grants
    update different rows instead of queueing on one. A branch pool may be funded by allocation from
    an HQ pool (``parent_id``), which spends the parent's budget and raises the child's limit.
    """

    __tablename__ = "pools"
    __table_args__ = (
        CheckConstraint("limit_units IS NULL OR limit_units >= 0", name="limit_units"),
        CheckConstraint("limit_fen IS NULL OR limit_fen >= 0", name="limit_fen"),
        CheckConstraint("stripes BETWEEN 1 AND 256", name="stripes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"))
    limit_units: Mapped[int | None] = mapped_column(BigInteger)
    limit_fen: Mapped[int | None] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8), default="none")
    stripes: Mapped[int] = mapped_column(default=8)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolStripe(Base):
    """One counter row of a pool in one period. The stripes' limits add up to the pool's limit."""

    __tablename__ = "pool_stripes"
    __table_args__ = (
        CheckConstraint("used_units >= 0 AND (limit_units IS NULL OR used_units <= limit_units)", name="units"),
        CheckConstraint("used_fen >= 0 AND (limit_fen IS NULL OR used_fen <= limit_fen)", name="fen"),
    )

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"), primary_key=True)
    period_start: Mapped[date] = mapped_column(primary_key=True)
    stripe: Mapped[int] = mapped_column(primary_key=True)
    limit_units: Mapped[int | None] = mapped_column(BigInteger)
    used_units: Mapped[int] = mapped_column(BigInteger, default=0)
    limit_fen: Mapped[int | None] = mapped_column(BigInteger)
    used_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class CapCounter(Base):
    """How many times a customer was given something under one cap scope in one period
    (``right:7``, ``campaign:12``, ``pool:3``, ``product:2``)."""

    __tablename__ = "cap_counters"
    __table_args__ = (CheckConstraint("n >= 0", name="n"),)

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    period_start: Mapped[date] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    n: Mapped[int] = mapped_column(default=0)


class Holding(Base):
    """What a customer holds of one right from one grant: a voucher, a coupon code, a lot of points.

    ``remaining`` always equals the sum of the ledger's ``units`` for this holding (reconciled)."""

    __tablename__ = "holdings"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= units", name="remaining"),
        Index("ix_holdings_customer", "customer_id", "right_id", "status"),
        Index("ix_holdings_expiry", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    right_id: Mapped[int] = mapped_column(ForeignKey("rights.id"))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"))
    org_id: Mapped[str] = mapped_column(String(32), index=True)
    units: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="active")
    code: Mapped[str | None] = mapped_column(String(64))
    source_type: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    grant_key: Mapped[str] = mapped_column(String(128), unique=True)
    period_start: Mapped[date | None]  # the pool period the grant spent, where a revoke gives it back
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class Reservation(Base):
    """Budget held for a customer until it is committed (turned into a grant) or released.
    A held reservation past ``expires_at`` is released by ``bankgrowth rights release-expired``."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_expiry", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id"))
    right_id: Mapped[int] = mapped_column(ForeignKey("rights.id"))
    customer_id: Mapped[str] = mapped_column(String(32), index=True)
    org_id: Mapped[str] = mapped_column(String(32))
    units: Mapped[int] = mapped_column(BigInteger)
    fen: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[date]
    status: Mapped[str] = mapped_column(String(12), default="held")
    source_type: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class LedgerEntry(Base):
    """One movement, never changed or deleted (the migration installs triggers that refuse it).

    ``units`` moves the holding's balance; ``pool_units``/``pool_fen`` move the pool's used counters
    in ``period_start``; ``cost_fen`` is the bank's cost the movement stands for (settlement).
    ``idempotency_key`` is unique: a retried request finds its first result instead of acting twice.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_holding", "holding_id"),
        Index("ix_ledger_pool", "pool_id", "period_start"),
        Index("ix_ledger_at", "at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    at: Mapped[datetime]
    customer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    right_id: Mapped[int | None] = mapped_column(ForeignKey("rights.id"))
    holding_id: Mapped[int | None] = mapped_column(BigInteger)
    reservation_id: Mapped[int | None] = mapped_column(BigInteger)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"))
    period_start: Mapped[date | None]
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    pool_units: Mapped[int] = mapped_column(BigInteger, default=0)
    pool_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    org_id: Mapped[str | None] = mapped_column(String(32))
    source_type: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(200), default="")


class CardProduct(Base):
    """A savings card (省钱卡): a bundle of rights sold at a price drawn from ``price_table``
    (``[{"price_fen": 99, "weight": 30}, …]``). ``bundle`` is ``[{"right": code, "quantity": n,
    "pool": code}, …]``."""

    __tablename__ = "card_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    list_price_fen: Mapped[int]
    price_table: Mapped[list[Any]] = mapped_column(JSON)
    bundle: Mapped[list[Any]] = mapped_column(JSON)
    purchase_limit: Mapped[int] = mapped_column(default=1)
    limit_period: Mapped[str] = mapped_column(String(8), default="month")
    payment_minutes: Mapped[int] = mapped_column(default=15)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CardOrder(Base):
    """One purchase: drawn → pending (inventory reserved, awaiting payment) → issued, or failed,
    expired, refunded. The draw's random number and table are kept so the price can be audited."""

    __tablename__ = "card_orders"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("card_products.id"))
    customer_id: Mapped[str] = mapped_column(String(32), index=True)
    org_id: Mapped[str] = mapped_column(String(32))
    price_fen: Mapped[int]
    draw: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12))
    payment_method: Mapped[str] = mapped_column(String(8))
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class PaymentEvent(Base):
    """Every payment callback received, applied or not, keyed by the provider's event id."""

    __tablename__ = "payment_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_no: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    outcome: Mapped[str] = mapped_column(String(12))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
