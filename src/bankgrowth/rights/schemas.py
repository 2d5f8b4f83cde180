"""Request and response shapes of rights (``XCreate`` / ``XRead``). Money is integer fen."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

CODE = r"^[A-Za-z0-9_.-]{1,64}$"
BIG = 10**15  # the largest amount (¥10 trillion in fen) or count accepted: sums stay within 64 bits


class RightKind(StrEnum):
    COUPON_CODE = "coupon_code"  # 券码
    VOUCHER = "voucher"  # 立减金
    POINTS = "points"  # 积分
    COINS = "coins"  # 虚拟币
    GIFT = "gift"  # 实物礼品


class Period(StrEnum):
    NONE = "none"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class RightCreate(Model):
    code: str = Field(pattern=CODE, description="Unique short name, e.g. wechat5.")
    kind: RightKind
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=400)
    org_id: str | None = Field(default=None, description="Owner org; the caller's org when left out.")
    face_value_fen: int | None = Field(default=None, ge=1, le=BIG, description="Voucher or coupon value in fen.")
    min_spend_fen: int | None = Field(default=None, ge=0, le=BIG, description="Minimum spend for a voucher, in fen.")
    institution: str | None = Field(default=None, max_length=32, description="Voucher scope: e.g. wechat_pay.")
    merchant: str | None = Field(default=None, max_length=64, description="Voucher scope: one merchant.")
    unit_cost_fen: int = Field(ge=0, le=BIG, description="The bank's cost per unit granted, in fen.")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: int | None = Field(default=None, ge=1, le=3660, description="Valid for this many days from grant.")
    exclusivity_group: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind in (RightKind.VOUCHER, RightKind.COUPON_CODE) and self.face_value_fen is None:
            raise ValueError(f"a {self.kind.value} needs face_value_fen")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class RightRead(Model):
    id: int
    code: str
    kind: str
    name_zh: str
    name_en: str
    description: str
    org_id: str
    face_value_fen: int | None
    min_spend_fen: int | None
    institution: str | None
    merchant: str | None
    unit_cost_fen: int
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    exclusivity_group: str | None
    active: bool


class PoolCreate(Model):
    code: str = Field(pattern=CODE)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    org_id: str | None = Field(default=None, description="Owner org; the caller's org when left out.")
    limit_units: int | None = Field(default=None, ge=0, le=BIG, description="Units per period; none: no unit limit.")
    limit_fen: int | None = Field(
        default=None, ge=0, le=BIG, description="Cost in fen per period; none: no money limit."
    )
    period: Period = Period.NONE
    stripes: int = Field(default=8, ge=1, le=256, description="Counter rows the limit is split over.")

    @model_validator(mode="after")
    def _limited(self) -> Self:
        if self.limit_units is None and self.limit_fen is None:
            raise ValueError("a pool needs limit_units, limit_fen or both")
        return self


class PoolRead(Model):
    id: int
    code: str
    name_zh: str
    name_en: str
    org_id: str
    parent_id: int | None
    limit_units: int | None
    limit_fen: int | None
    period: str
    stripes: int
    active: bool


class PoolUsage(Model):
    pool: PoolRead
    period_start: date
    used_units: int
    used_fen: int
    left_units: int | None
    left_fen: int | None


class Allocation(Model):
    to_pool: str = Field(pattern=CODE, description="The branch pool that receives the budget.")
    units: int = Field(default=0, ge=0, le=BIG)
    fen: int = Field(default=0, ge=0, le=BIG)
    key: str = Field(min_length=1, max_length=100, description="Idempotency key of this allocation.")


class GrantCreate(Model):
    right: str = Field(pattern=CODE)
    pool: str = Field(pattern=CODE)
    customer_id: str = Field(min_length=1, max_length=32)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    key: str = Field(min_length=1, max_length=128, description="Idempotency key: a retry with it grants nothing more.")
    source_type: str = Field(default="manual", pattern=r"^(campaign|activity|purchase|manual)$")
    source_id: str = Field(default="api", min_length=1, max_length=64)
    reason: str = Field(default="", max_length=200)
    per_customer_limit: int | None = Field(
        default=None, ge=1, le=BIG, description="At most this many of the right per customer."
    )


class GrantRead(Model):
    key: str
    customer_id: str
    status: str
    holding_id: int | None


class HoldingRead(Model):
    id: int
    customer_id: str
    right_id: int
    org_id: str
    units: int
    remaining: int
    status: str
    code: str | None
    source_type: str
    source_id: str
    granted_at: datetime
    expires_at: datetime | None


class RedeemCreate(Model):
    holding_id: int = Field(ge=1, le=2**62)
    units: int = Field(default=1, ge=1, le=BIG)
    key: str = Field(min_length=1, max_length=128, description="Idempotency key, e.g. the payment's order number.")
    reason: str = Field(default="", max_length=200)


class RedemptionRead(Model):
    key: str
    holding_id: int
    units: int
    status: str


class CodesImport(Model):
    codes: list[str] = Field(default_factory=list, max_length=100_000)
    generate: int = Field(default=0, ge=0, le=1_000_000, description="Also generate this many random codes.")


class CodesImported(Model):
    added: int
    already_present: int


class PricePoint(Model):
    price_fen: int = Field(ge=1, le=BIG, description="A price the draw can give, in fen.")
    weight: int = Field(ge=1, le=BIG, description="Relative chance of this price (an integer, so the table is exact).")


class BundleItem(Model):
    right: str = Field(pattern=CODE)
    quantity: int = Field(ge=1, le=100)
    pool: str = Field(pattern=CODE, description="The pool that pays for this item.")


class ProductCreate(Model):
    code: str = Field(pattern=CODE)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    org_id: str | None = None
    list_price_fen: int = Field(ge=1, le=BIG)
    price_table: list[PricePoint] = Field(min_length=1, max_length=100)
    bundle: list[BundleItem] = Field(min_length=1, max_length=20)
    purchase_limit: int = Field(default=1, ge=1, le=BIG, description="Purchases per customer per limit_period.")
    limit_period: Period = Period.MONTH
    payment_minutes: int = Field(default=15, ge=1, le=1440, description="Unpaid orders are released after this.")


class ProductRead(Model):
    id: int
    code: str
    name_zh: str
    name_en: str
    org_id: str
    list_price_fen: int
    price_table: list[PricePoint]
    bundle: list[BundleItem]
    purchase_limit: int
    limit_period: str
    payment_minutes: int
    active: bool


class PurchaseCreate(Model):
    customer_id: str = Field(min_length=1, max_length=32)
    key: str = Field(min_length=1, max_length=128, description="Idempotency key: a retry returns the same order.")
    payment_method: str = Field(default="card", pattern=r"^(card|ecny)$")


class OrderRead(Model):
    order_no: str
    product_id: int
    customer_id: str
    price_fen: int
    draw: dict[str, object]
    status: str
    payment_method: str
    provider_ref: str | None
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None


class CallbackResult(Model):
    event_id: str
    order_no: str
    outcome: str
    status: str


class RevokeCreate(Model):
    key: str = Field(min_length=1, max_length=128, description="Idempotency key of this revocation.")
    reason: str = Field(min_length=1, max_length=200)


class SettlementRead(Model):
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


class Catalog(Model):
    """A catalog kept as a file: rights, budget pools and savings cards, installed in that order
    (a card's bundle names rights and pools). ``bankgrowth rights install FILE`` reads one."""

    rights: list[RightCreate] = Field(default_factory=list)
    pools: list[PoolCreate] = Field(default_factory=list)
    savings_cards: list[ProductCreate] = Field(default_factory=list)


class CatalogInstalled(Model):
    """What installing a catalog did, each entry named by kind and code (``right demo.voucher5``)."""

    created: list[str]
    kept: list[str] = Field(description="Present already, with the catalog's values.")
    differing: list[str] = Field(description="Present with other values, left as they are: each with what differs.")
