"""The core segments (百类核心客群): audiences every bank asks for, each with a Chinese and
an English description and its rule in the text form. ``bankgrowth audiences segments --install``
creates the missing ones as HQ audiences, which every branch can use over its own customers.

Thresholds follow the lifecycle model (super user: more than 20 transactions in 365 days) and the
tag units: amounts are fen (¥1 = 100 fen), shares are 0–1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    code: str
    zh: str
    en: str
    description_zh: str
    description_en: str
    rule: str


CORE_SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "core.bound_no_txn_7d", "绑卡7天未交易", "Bound 7+ days, never transacted",
        "已绑卡满7天但从未交易，激活（Activation）的首选对象。",
        "Bound a card at least 7 days ago and never transacted: the first target of activation.",
        "stage = 'bound' and days_since_first_bind >= 7",
    ),
    Segment(
        "core.super_users", "超级用户", "Super users",
        "近365天快捷支付交易超过20笔且近期仍活跃。",
        "More than 20 quick-pay transactions in 365 days and still active.",
        "stage = 'super'",
    ),
    Segment(
        "core.at_risk_super", "流失预警的超级用户", "At-risk super users",
        "曾是高频用户（365天超过20笔），但近期没有交易，留存（Retention）的重点。",
        "Heavy users (20+ transactions in 365 days) who stopped recently: the focus of retention.",
        "stage = 'at_risk' and txn_count_365d > 20",
    ),
    Segment(
        "core.dormant_high_value", "沉睡60天以上的高价值客户", "Dormant 60+ days, high past value",
        "60天以上无交易，但近一年交易金额不低于5000元。",
        "No transaction for 60 days or more, yet at least ¥5,000 spent in the last year.",
        "days_since_last_txn >= 60 and txn_amount_365d >= 500000",
    ),
    Segment(
        "core.single_institution", "单一机构用户", "Single-institution users",
        "只在一家支付机构绑卡，可引导多机构绑卡。",
        "Bound into exactly one payment institution: candidates for binding into more.",
        "institutions_bound = 1",
    ),
    Segment(
        "core.multi_institution", "多机构用户", "Multi-institution users",
        "在两家及以上支付机构绑卡。",
        "Bound into two or more payment institutions.",
        "multi_institution = true",
    ),
    Segment(
        "core.elderly", "老年客群", "Elderly",
        "60岁及以上，适合适老化服务与防诈提醒。",
        "Aged 60 or more: senior-friendly service and fraud warnings.",
        "age >= 60",
    ),
    Segment(
        "core.young", "年轻客群（18–25岁）", "Young (18–25)",
        "18至25岁的年轻客户。",
        "Customers aged 18 to 25.",
        "age between 18 and 25",
    ),
    Segment(
        "core.high_value_low_frequency", "高客单低频客户", "High value, low frequency",
        "笔均不低于200元，但近90天交易不超过3笔。",
        "Average ticket of ¥200 or more, but at most 3 transactions in 90 days.",
        "avg_ticket_365d >= 20000 and txn_count_90d <= 3 and txn_count_365d >= 1",
    ),
    Segment(
        "core.recent_withdrawal", "近期提现回流", "Recent withdrawal back to card",
        "近30天有从钱包提现回本行卡的记录（提现回流）。",
        "Withdrew money from a wallet back to the card in the last 30 days.",
        "txn_count(30 days, scene = 'withdrawal') >= 1",
    ),
    Segment(
        "core.new_binders_7d", "近7天新绑卡", "New binders (7 days)",
        "首次绑卡发生在近7天内。",
        "Bound their first card in the last 7 days.",
        "first_bound_at in last 7 days",
    ),
    Segment(
        "core.won_back_30d", "近30天挽回客户", "Won back (30 days)",
        "近30天从流失状态重新交易。",
        "Came back from churn in the last 30 days.",
        "entered('won_back', 30 days)",
    ),
    Segment(
        "core.unbound", "注册未绑卡", "Registered, never bound",
        "已注册但从未绑卡，获客（Acquisition）的对象。",
        "Registered but never bound a card: the target of acquisition.",
        "stage = 'unbound'",
    ),
    Segment(
        "core.unbound_all", "全部解绑", "Removed every binding",
        "曾经绑卡，但已解除全部绑定。",
        "Bound before, but removed every binding.",
        "unbound_all = true",
    ),
    Segment(
        "core.wechat_active", "微信支付活跃", "Active on WeChat Pay",
        "近30天在微信支付交易至少3笔。",
        "At least 3 transactions through WeChat Pay in the last 30 days.",
        "txn_count(30 days, institution = 'wechat_pay') >= 3",
    ),
    Segment(
        "core.near_super", "即将成为超级用户", "Close to super user",
        "活跃客户，近365天交易15至20笔，再多几笔即成为超级用户。",
        "Active, with 15 to 20 transactions in 365 days: a few more make a super user.",
        "stage = 'transacting' and txn_count_365d between 15 and 20",
    ),
    Segment(
        "core.one_click_idle", "一键绑卡未交易", "One-click bound, idle",
        "通过银行推送的一键绑卡绑定，但从未交易。",
        "Bound through the bank's one-click binding, but never transacted.",
        "one_click_bound = true and stage = 'bound'",
    ),
    Segment(
        "core.foodies", "餐饮消费客群", "Dining and grocery spenders",
        "近90天餐饮与商超消费不低于500元（衣食住行玩医金融之“食”）。",
        "At least ¥500 on dining and groceries in 90 days (the 'food' need).",
        "txn_amount(90 days, merchant_category in ('dining', 'grocery')) >= 50000",
    ),
    Segment(
        "core.travellers", "出行客群", "Travellers",
        "近一年出行类消费不低于1000元（“行”）。",
        "At least ¥1,000 on travel and transport in the last year (the 'travel' need).",
        "spend_travel_365d >= 100000",
    ),
    Segment(
        "core.night_spenders", "夜间消费客群", "Night spenders",
        "近90天至少5笔交易且四分之一以上在夜间（22点至次日6点）。",
        "At least 5 transactions in 90 days, more than a quarter of them at night (22:00–05:59).",
        "txn_count_90d >= 5 and night_share_90d > 0.25",
    ),
    Segment(
        "core.contactable_transacting", "可营销的活跃客户", "Contactable active customers",
        "同意营销且近30天有交易，可直接触达。",
        "Consented to marketing and transacted in the last 30 days: can be reached directly.",
        "marketing_consent = true and txn_count_30d >= 1",
    ),
)  # fmt: skip
