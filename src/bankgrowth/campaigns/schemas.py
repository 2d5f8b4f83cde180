"""Request and response shapes of campaigns (``XCreate`` / ``XRead``) and the campaign definition.

A definition says who (an audience, snapshotted at launch), when (the trigger), what (arms: the
rights each grants, the message, the channel), how it is measured (the control share and the
goal) and what it may spend (the budget pool and the per-customer limit). It is stored as JSON in
an immutable version; changing a campaign writes a new version.
"""

from __future__ import annotations

import string
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

CODE = r"^[A-Za-z0-9_.-]{1,64}$"
ARM = r"^[a-z][a-z0-9_]{0,31}$"
VARIABLES = frozenset({"surname", "right", "face_value", "valid_days", "branch", "campaign"})
"""What a message template may refer to, as ``{surname}``; ``face_value`` is in yuan."""


class Channel(StrEnum):
    SMS = "sms"  # 短信
    APP_PUSH = "app_push"  # App 推送
    WECHAT_TEMPLATE = "wechat_template"  # 微信模板消息
    ENTERPRISE_WECHAT = "enterprise_wechat"  # 企业微信 1 对 1 任务
    DISPLAY_SLOT = "display_slot"  # 展位
    OUTBOUND_CALL = "outbound_call"  # 外呼名单


ALL = "*"
"""Every channel at once: a do-not-contact entry or a contact cap that holds across channels."""
BATCH = 2000
"""Customers a campaign's execution grants and queues per transaction."""

CHANNEL_LABELS: dict[Channel, tuple[str, str]] = {
    Channel.SMS: ("短信", "SMS"),
    Channel.APP_PUSH: ("App推送", "App push"),
    Channel.WECHAT_TEMPLATE: ("微信模板消息", "WeChat template message"),
    Channel.ENTERPRISE_WECHAT: ("企业微信1对1", "Enterprise WeChat 1-to-1"),
    Channel.DISPLAY_SLOT: ("展位", "In-app display slot"),
    Channel.OUTBOUND_CALL: ("外呼", "Outbound call list"),
}


class Status(StrEnum):
    DRAFT = "draft"  # 草稿
    PENDING = "pending_approval"  # 待审批
    APPROVED = "approved"  # 已审批
    RUNNING = "running"  # 执行中
    FINISHED = "finished"  # 已结束
    REJECTED = "rejected"  # 已驳回 (back to editing: a new version returns it to draft)


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


def _fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:  # an unmatched brace
        raise ValueError(f"template {template!r}: {exc}") from exc


class Message(Model):
    """The text in Chinese and English; ``{variable}`` is filled per customer (see ``VARIABLES``)."""

    zh: str = Field(min_length=1, max_length=500)
    en: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _known_variables(self) -> Self:
        for lang, text in (("zh", self.zh), ("en", self.en)):
            unknown = _fields(text) - VARIABLES
            if unknown:
                raise ValueError(
                    f"message.{lang} uses unknown variable(s) {sorted(unknown)}; expected some of {sorted(VARIABLES)}"
                )
        return self


class ArmRight(Model):
    right: str = Field(pattern=CODE, description="A right's code, from the catalog.")
    quantity: int = Field(default=1, ge=1, le=100_000, description="Units per customer (points: the amount).")


class Arm(Model):
    """One treatment. Customers not in the control group are split over the arms by weight."""

    name: str = Field(pattern=ARM, description="Short lowercase name, e.g. voucher5.")
    weight: int = Field(default=1, ge=1, le=100)
    rights: list[ArmRight] = Field(default_factory=list, max_length=5)
    message: Message | None = None
    channel: Channel | Literal["best"] = Field(
        default="best", description="A channel, or best: the customer's most responsive contactable channel."
    )
    offer: str | None = Field(
        default=None, pattern=CODE, description="A savings-card product the message offers (Revenue campaigns)."
    )

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if not self.rights and self.message is None:
            raise ValueError(f"arm {self.name} grants nothing and says nothing: give rights, a message, or both")
        if self.offer is not None and self.message is None:
            raise ValueError(f"arm {self.name} offers {self.offer} but has no message to offer it with")
        return self


class Trigger(Model):
    """``once``: at launch; ``scheduled``: at ``at``. ``event`` and ``transition`` (a lifecycle move,
    e.g. bound → at risk) are part of the model; their runtime comes with the event stream."""

    type: Literal["once", "scheduled", "event", "transition"] = "once"
    at: AwareDatetime | None = None
    event: str | None = Field(default=None, max_length=64)
    from_stage: str | None = Field(default=None, max_length=32)
    to_stage: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.type == "scheduled" and self.at is None:
            raise ValueError("a scheduled trigger needs at")
        if self.type == "event" and not self.event:
            raise ValueError("an event trigger needs event")
        if self.type == "transition" and not self.to_stage:
            raise ValueError("a transition trigger needs to_stage")
        return self


class Goal(Model):
    """What success is, per customer, in ``window_days`` from launch: ``conversion`` (at least
    ``min_transactions`` quick-pay transactions), ``transactions`` (their number) or ``amount`` (fen)."""

    metric: Literal["conversion", "transactions", "amount"] = "conversion"
    window_days: int = Field(default=14, ge=1, le=180)
    min_transactions: int = Field(default=1, ge=1, le=1000)
    institution: str | None = Field(default=None, max_length=32, description="Count only this institution's.")


class CustomerCap(Model):
    """At most ``limit`` grants per customer per ``period`` under ``scope``: every campaign that names
    the scope counts against the same per-customer counter."""

    scope: str = Field(pattern=CODE)
    limit: int = Field(ge=1, le=1000)
    period: Literal["none", "day", "week", "month"] = "month"


class Definition(Model):
    audience: str = Field(pattern=CODE, description="The audience's code; snapshotted at launch.")
    trigger: Trigger = Field(default_factory=Trigger)
    arms: list[Arm] = Field(min_length=1, max_length=8)
    control_share: float = Field(default=0.1, ge=0.0, le=0.5, description="Held out at random, never treated.")
    pool: str | None = Field(default=None, pattern=CODE, description="The budget pool rights are granted from.")
    caps: list[CustomerCap] = Field(
        default_factory=list,
        max_length=5,
        description="Per-customer caps shared across campaigns that name the same scope, e.g. two vouchers a month.",
    )
    goal: Goal = Field(default_factory=Goal)
    stage: str | None = Field(default=None, max_length=16, description="The 3A3R stage, when made from a template.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ; found {names}")
        if any(a.rights for a in self.arms) and self.pool is None:
            raise ValueError("an arm grants rights, so the campaign needs a budget pool")
        return self


class CampaignCreate(Model):
    code: str = Field(pattern=CODE)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=400)
    org_id: str | None = Field(default=None, description="Owner org; the caller's org when left out.")
    definition: Definition


class Decision(Model):
    approve: bool
    comment: str = Field(default="", max_length=400)


class CampaignRead(Model):
    id: int
    code: str
    name_zh: str
    name_en: str
    description: str
    org_id: str
    status: str
    version: int
    salt: str
    snapshot_id: int | None
    created_by: str
    submitted_by: str | None
    approved_by: str | None
    launched_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CampaignDetail(CampaignRead):
    definition: dict[str, Any]


class FromTemplate(Model):
    """A campaign made from a 3A3R template (``GET /campaign-templates`` lists them)."""

    template: Literal["acquisition", "activation", "retention", "revenue", "referral"]
    code: str = Field(pattern=CODE)
    right: str | None = Field(default=None, pattern=CODE, description="The right to grant (all but revenue).")
    offer: str | None = Field(default=None, pattern=CODE, description="The savings-card product (revenue).")
    pool: str | None = Field(default=None, pattern=CODE)
    audience: str | None = Field(default=None, pattern=CODE, description="Default: the template's core segment.")
    control_share: float = Field(default=0.1, ge=0.0, le=0.5)
    org_id: str | None = None


class TemplateRead(Model):
    name: str
    stage: str
    name_zh: str
    name_en: str
    audience: str
    needs: Literal["right", "offer"]
    channel: str
    goal: Goal
    message: Message


class ExecutionRead(Model):
    campaign: str
    status: str  # running, done
    planned: int
    control: int
    treated: int
    granted: int
    refused: int
    messages: int
    suppressed: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    messages_by_status: dict[str, int] = Field(default_factory=dict)


class DoNotContactCreate(Model):
    channel: Channel | Literal["*"] = Field(default="*", description="One channel, or * for every channel.")
    reason: str = Field(min_length=1, max_length=200)


class DoNotContactRead(Model):
    customer_id: str
    channel: str
    reason: str
    created_by: str
    created_at: datetime


class ReceiptsRead(Model):
    received: int
    matched: int
    unknown: list[str]
    invalid: list[dict[str, Any]]


# --- results: numbers that may be undefined (no variance, no control) are null ------------------


class LiftRead(Model):
    treatment_mean: float | None
    control_mean: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    n_treatment: int
    n_control: int


class SampleRatioRead(Model):
    observed_treatment: int
    observed_control: int
    expected_treatment_share: float
    chi2: float | None
    p_value: float | None
    mismatch: bool


class CellRead(Model):
    value: str
    n_treatment: int
    n_control: int
    lift: LiftRead | None


class ArmResultRead(Model):
    arm: str
    n: int
    lifts: dict[str, LiftRead] = Field(description="conversion (share), transactions (per customer), amount (fen).")
    goal_cuped: LiftRead
    theta: float | None
    srm: SampleRatioRead
    incremental_conversions: float | None
    incremental_transactions: float | None
    incremental_amount_yuan: Decimal
    granted_cost_yuan: Decimal
    redeemed_cost_yuan: Decimal
    roi: float | None = Field(description="Incremental amount per yuan of rights granted.")
    by_stage: list[CellRead]
    by_institution: list[CellRead]


class ResultsRead(Model):
    campaign: str
    goal: Goal
    window_start: datetime
    window_end: datetime
    data_until: datetime | None
    complete: bool = Field(description="The warehouse's data covers the whole goal window.")
    control: int
    arms: list[ArmResultRead]
    messages: dict[str, int]
