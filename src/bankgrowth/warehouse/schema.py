"""The canonical data model: the single source of truth for every warehouse table.

Each :class:`TableSpec` gives the Ibis schema (what the engines store), the Arrow schema (what
files and the simulator write), and the rules ingest validates (nullability, allowed values,
ranges, patterns, cross-field checks, foreign keys). ``docs/data-model.md`` is generated from
these specs (``bankgrowth schema docs``) and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa

Kind = Literal["int", "string", "bool", "date", "timestamp"]

INSTITUTIONS: tuple[str, ...] = (
    "wechat_pay",
    "alipay",
    "unionpay_cloud",
    "jd_pay",
    "meituan_pay",
    "douyin_pay",
    "other",
)
AUTH_LEVELS: tuple[str, ...] = ("phone", "real_name", "bound_card", "account_ii_iii", "account_i")
BIND_CHANNELS: tuple[str, ...] = ("bank_app", "wallet_app", "mini_program", "h5", "counter")
SCENES: tuple[str, ...] = ("online", "offline", "transfer", "withdrawal")
EVENT_TYPES: tuple[str, ...] = (
    "login",
    "page_view",
    "click",
    "share",
    "search",
    "sign_in",
    "coupon_view",
)
EVENT_CHANNELS: tuple[str, ...] = ("app", "mini_program", "h5")
# Merchant categories, each mapped to one of the seven customer needs (衣食住行玩医金融).
MERCHANT_CATEGORY_NEED: dict[str, str] = {
    "apparel": "clothing",
    "dining": "food",
    "grocery": "food",
    "housing": "housing",
    "utilities": "housing",
    "transport": "travel",
    "travel": "travel",
    "entertainment": "leisure",
    "ecommerce": "leisure",
    "education": "leisure",
    "health": "health",
    "finance": "finance",
    "other": "other",
}
MERCHANT_CATEGORIES: tuple[str, ...] = tuple(MERCHANT_CATEGORY_NEED)

_KIND_TO_IBIS: dict[Kind, dt.DataType] = {
    "int": dt.int64,
    "string": dt.string,
    "bool": dt.boolean,
    "date": dt.date,
    "timestamp": dt.Timestamp(timezone="UTC"),
}
_KIND_TO_ARROW: dict[Kind, pa.DataType] = {
    "int": pa.int64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class Column:
    """One field: its type, meaning and the rules a loaded value must satisfy."""

    name: str
    kind: Kind
    description: str
    unit: str = ""
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    pii: bool = False

    @property
    def expected(self) -> str:
        """What a valid value looks like, in words, for error reports."""
        if self.allowed is not None:
            return "one of " + ", ".join(self.allowed)
        text = {
            "int": "an integer",
            "string": "text",
            "bool": "true or false",
            "date": "a date YYYY-MM-DD",
            "timestamp": "a timestamp YYYY-MM-DDTHH:MM:SS[+08:00]",
        }[self.kind]
        if self.min is not None and self.max is not None:
            text += f" from {self.min} to {self.max}"
        elif self.min is not None:
            text += f" >= {self.min}"
        if self.pattern is not None:
            text += f" matching {self.pattern}"
        return text


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    ref_column: str


@dataclass(frozen=True)
class Ordered:
    """Cross-field rule: ``later`` is null or not before ``earlier``."""

    earlier: str
    later: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: str
    foreign_keys: tuple[ForeignKey, ...] = ()
    ordered: tuple[Ordered, ...] = ()
    # (column, table): the row's column must equal the referenced row's customer_id.
    same_customer_as: tuple[tuple[str, str], ...] = ()
    load_order: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def ibis_schema(self) -> ibis.Schema:
        return ibis.schema({c.name: _KIND_TO_IBIS[c.kind].copy(nullable=c.nullable) for c in self.columns})

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _KIND_TO_ARROW[c.kind], nullable=c.nullable) for c in self.columns])


BRANCHES = TableSpec(
    name="branches",
    description="The bank's org tree: head office (HQ) → branch (分行) → sub-branch (支行).",
    primary_key="branch_id",
    load_order=0,
    columns=(
        Column("branch_id", "string", "Stable org code, e.g. HQ, B01, B01-S02.", pattern=r"^[A-Za-z0-9_-]{1,32}$"),
        Column("parent_id", "string", "The parent org's branch_id; empty for HQ.", nullable=True),
        Column("level", "string", "Place in the tree.", allowed=("hq", "branch", "sub_branch")),
        Column("name_zh", "string", "Chinese name, e.g. 杭州分行."),
        Column("name_en", "string", "English name."),
        Column("city", "string", "City the org serves."),
        Column("city_tier", "int", "China city tier of that city (1 = Beijing/Shanghai class).", min=1, max=5),
    ),
    foreign_keys=(ForeignKey("parent_id", "branches", "branch_id"),),
)

CUSTOMERS = TableSpec(
    name="customers",
    description="Retail customers of the bank's card and quick-payment business.",
    primary_key="customer_id",
    load_order=1,
    columns=(
        Column("customer_id", "int", "The bank's customer number (ECIF id).", min=1),
        Column("branch_id", "string", "Home sub-branch (or branch) that owns the customer."),
        Column("name", "string", "Full name. Personal data: masked by default.", pii=True),
        Column("phone", "string", "Mobile number, 11 digits. Personal data.", pattern=r"^1[3-9][0-9]{9}$", pii=True),
        Column("birth_year", "int", "Year of birth.", unit="year", min=1900, max=2030),
        Column("gender", "string", "F female, M male, U unknown.", allowed=("F", "M", "U")),
        Column("city_tier", "int", "Tier of the customer's city of residence.", min=1, max=5),
        Column("registered_on", "date", "Date the customer registered with the bank (local date)."),
        Column(
            "auth_level",
            "string",
            "Authentication level: phone user, real-name verified, bound a card, holds a class II/III "
            "e-account, holds a class I account.",
            allowed=AUTH_LEVELS,
        ),
        Column("marketing_consent", "bool", "Customer agreed to marketing messages (PIPL consent)."),
        Column("referrer_id", "int", "customer_id of the customer who referred this one.", nullable=True, min=1),
    ),
    foreign_keys=(
        ForeignKey("branch_id", "branches", "branch_id"),
        ForeignKey("referrer_id", "customers", "customer_id"),
    ),
)

CARDS = TableSpec(
    name="cards",
    description="Cards and the accounts behind them. Credit cards have no account class.",
    primary_key="card_id",
    load_order=2,
    columns=(
        Column("card_id", "int", "Card identifier (a surrogate for the card number, never the PAN).", min=1),
        Column("customer_id", "int", "Card holder.", min=1),
        Column("card_type", "string", "debit (借记卡) or credit (信用卡).", allowed=("debit", "credit")),
        Column(
            "account_class",
            "string",
            "Account class of a debit card: I (full), II (limited e-account), III (small payments). "
            "Empty for credit cards.",
            nullable=True,
            allowed=("I", "II", "III"),
        ),
        Column("opened_on", "date", "Date the card was issued."),
        Column("closed_on", "date", "Date the card was closed; empty while open.", nullable=True),
    ),
    foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
    ordered=(Ordered("opened_on", "closed_on"),),
)

QUICKPAY_BINDINGS = TableSpec(
    name="quickpay_bindings",
    description="Quick-payment bindings (快捷支付绑卡): a card bound into a payment institution's wallet.",
    primary_key="binding_id",
    load_order=3,
    columns=(
        Column("binding_id", "int", "Binding identifier.", min=1),
        Column("customer_id", "int", "Card holder.", min=1),
        Column("card_id", "int", "The bound card; it must belong to customer_id.", min=1),
        Column("institution", "string", "Payment institution the card is bound into.", allowed=INSTITUTIONS),
        Column("bound_at", "timestamp", "When the binding was made."),
        Column("unbound_at", "timestamp", "When the binding was removed; empty while bound.", nullable=True),
        Column("bind_channel", "string", "Where the customer bound the card.", allowed=BIND_CHANNELS),
        Column("one_click", "bool", "Bound through one-click binding (一键绑卡) pushed by the bank."),
    ),
    foreign_keys=(
        ForeignKey("customer_id", "customers", "customer_id"),
        ForeignKey("card_id", "cards", "card_id"),
    ),
    ordered=(Ordered("bound_at", "unbound_at"),),
    same_customer_as=(("card_id", "cards"),),
)

TRANSACTIONS = TableSpec(
    name="transactions",
    description="Quick-payment transactions debited from a bound card, and withdrawals back to it.",
    primary_key="txn_id",
    load_order=4,
    columns=(
        Column("txn_id", "int", "Transaction identifier.", min=1),
        Column("customer_id", "int", "Card holder.", min=1),
        Column("card_id", "int", "Card debited (or credited, for a withdrawal); must belong to customer_id.", min=1),
        Column("institution", "string", "Payment institution that initiated it.", allowed=INSTITUTIONS),
        Column(
            "amount_fen",
            "int",
            "Amount in fen (1 yuan = 100 fen), always positive; the scene says the direction.",
            unit="fen",
            min=1,
            max=10_000_000_000,
        ),
        Column("txn_at", "timestamp", "When the transaction happened."),
        Column(
            "merchant_category", "string", "Merchant category, mapped to a customer need.", allowed=MERCHANT_CATEGORIES
        ),
        Column(
            "scene",
            "string",
            "online, offline (QR / POS), transfer to a person, or withdrawal: money withdrawn from "
            "the wallet back to the card (提现回流).",
            allowed=SCENES,
        ),
    ),
    foreign_keys=(
        ForeignKey("customer_id", "customers", "customer_id"),
        ForeignKey("card_id", "cards", "card_id"),
    ),
    same_customer_as=(("card_id", "cards"),),
)

EVENTS = TableSpec(
    name="events",
    description="Behaviour events (埋点) from the bank's channels.",
    primary_key="event_id",
    load_order=4,
    columns=(
        Column("event_id", "int", "Event identifier, unique across channels.", min=1),
        Column("customer_id", "int", "Customer who acted.", min=1),
        Column("event_type", "string", "What happened.", allowed=EVENT_TYPES),
        Column("channel", "string", "Channel application.", allowed=EVENT_CHANNELS),
        Column("page", "string", "Page or element identifier, where applicable.", nullable=True),
        Column("event_at", "timestamp", "When it happened."),
    ),
    foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (BRANCHES, CUSTOMERS, CARDS, QUICKPAY_BINDINGS, TRANSACTIONS, EVENTS)
}

QUARANTINE = "_quarantine"
LOADS = "_loads"

QUARANTINE_SCHEMA = ibis.schema(
    {
        "load_id": "string",
        "table_name": "string",
        "file": "string",
        "line": "int64",
        "field": "string",
        "expected": "string",
        "found": "string",
        "record": "string",
    }
)
LOADS_SCHEMA = ibis.schema(
    {
        "load_id": "string",
        "table_name": "string",
        "file": "string",
        "fingerprint": "string",
        "rows_read": "int64",
        "rows_loaded": "int64",
        "rows_quarantined": "int64",
        "duplicates_skipped": "int64",
        "loaded_at": dt.Timestamp(timezone="UTC"),
    }
)


def table_for_file_name(stem: str) -> TableSpec | None:
    """Guess the table from a file name: ``transactions.csv``, ``transactions-0003.parquet``."""
    base = stem.lower().split(".")[0]
    for name in sorted(TABLES, key=len, reverse=True):
        if base == name or base.startswith(name + "-") or base.startswith(name + "_"):
            return TABLES[name]
    return None
