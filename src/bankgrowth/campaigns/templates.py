"""3A3R templates: one ready campaign per lifecycle stage, filled with the bank's own rights.

- Acquisition (获客): registered but never bound → a binding reward;
- Activation (激活): bound 7+ days without a transaction → a ¥5 voucher (立减金);
- Retention (留存): at-risk super users → points;
- Revenue (收入): active, contactable customers → the savings-card offer (省钱卡);
- Referral (推荐): super users → an invite reward.

A template names the core segment it targets and what it needs from the catalog (a right and
the budget pool it is paid from, or a savings-card product for Revenue); :func:`build` returns an
ordinary ``CampaignCreate``, which is then checked, versioned and approved like any other campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bankgrowth.campaigns.schemas import Arm, ArmRight, CampaignCreate, Channel, Goal, Message
from bankgrowth.campaigns.service import parse_definition
from bankgrowth.errors import Invalid


@dataclass(frozen=True)
class Template:
    stage: str
    zh: str
    en: str
    audience: str
    needs: Literal["right", "offer"]
    message: Message
    channel: Channel | Literal["best"]
    goal: Goal


TEMPLATES: dict[str, Template] = {
    "acquisition": Template(
        "acquisition",
        "获客：注册未绑卡送绑卡礼",
        "Acquisition: binding reward for the registered but unbound",
        "core.unbound",
        "right",
        Message(
            zh="{surname}您好，绑定{branch}银行卡即得{right}，快捷支付更便捷。",
            en="Dear {surname}, bind your {branch} card to receive {right}.",
        ),
        "best",
        Goal(metric="conversion", window_days=30),
    ),
    "activation": Template(
        "activation",
        "激活：绑卡未交易送5元立减金",
        "Activation: a ¥5 voucher for bound customers who never paid",
        "core.bound_no_txn_7d",
        "right",
        Message(
            zh="{surname}您好，您有一张{face_value}元{right}已到账，{valid_days}天内快捷支付即可使用。",
            en="Dear {surname}, a ¥{face_value} {right} is in your wallet: use it within {valid_days} days.",
        ),
        "best",
        Goal(metric="conversion", window_days=14),
    ),
    "retention": Template(
        "retention",
        "留存：流失预警超级用户送积分",
        "Retention: points for at-risk super users",
        "core.at_risk_super",
        "right",
        Message(
            zh="{surname}您好，感谢您一直以来的支持，{right}已存入您的账户。",
            en="Dear {surname}, thank you for staying with us: {right} is in your account.",
        ),
        "best",
        Goal(metric="transactions", window_days=30),
    ),
    "revenue": Template(
        "revenue",
        "收入：活跃客户推荐省钱卡",
        "Revenue: the savings card for active customers",
        "core.contactable_transacting",
        "offer",
        Message(
            zh="{surname}您好，{campaign}：开通省钱卡，每月立减金天天用。",
            en="Dear {surname}, {campaign}: get the savings card and a month of vouchers.",
        ),
        "best",
        Goal(metric="amount", window_days=14),
    ),
    "referral": Template(
        "referral",
        "推荐：超级用户邀请有礼",
        "Referral: an invite reward for super users",
        "core.super_users",
        "right",
        Message(
            zh="{surname}您好，邀请好友绑卡，您和好友各得{right}。",
            en="Dear {surname}, invite a friend to bind a card and you both get {right}.",
        ),
        "best",
        Goal(metric="transactions", window_days=30),
    ),
}


def build(
    name: str,
    *,
    code: str,
    right: str | None = None,
    offer: str | None = None,
    pool: str | None = None,
    audience: str | None = None,
    control_share: float = 0.1,
    org_id: str | None = None,
) -> CampaignCreate:
    template = TEMPLATES.get(name)
    if template is None:
        raise Invalid(
            f"no campaign template {name!r}; expected one of {sorted(TEMPLATES)}",
            f"没有营销活动模板 {name!r}；可选 {sorted(TEMPLATES)}",
            code="template_not_found",
        )
    if template.needs == "right" and right is None:
        raise Invalid(
            f"template {name} grants a right: give its code",
            f"模板 {name} 需要指定权益编码",
            code="template_needs_right",
        )
    if template.needs == "right" and pool is None:
        raise Invalid(
            f"template {name} grants a right: give the budget pool it is paid from",
            f"模板 {name} 发放权益，需要指定预算池",
            code="template_needs_pool",
        )
    if template.needs == "offer" and offer is None:
        raise Invalid(
            f"template {name} offers a savings card: give the product's code",
            f"模板 {name} 需要指定省钱卡产品编码",
            code="template_needs_offer",
        )
    arm = Arm(
        name="offer" if template.needs == "offer" else "treatment",
        rights=[ArmRight(right=right)] if template.needs == "right" and right else [],
        message=template.message,
        channel=template.channel,
        offer=offer if template.needs == "offer" else None,
    )
    # anything the checks above did not name is a 422 naming each problem, not a crash
    definition = parse_definition(
        {
            "audience": audience or template.audience,
            "arms": [arm],
            "control_share": control_share,
            "pool": pool if arm.rights else None,
            "goal": template.goal,
            "stage": template.stage,
        }
    )
    return CampaignCreate(code=code, name_zh=template.zh, name_en=template.en, org_id=org_id, definition=definition)
