"""Generates the data-model reference (docs/data-model.md) from the table specs."""

from __future__ import annotations

from collections.abc import Iterable

from bankgrowth.warehouse.schema import MERCHANT_CATEGORY_NEED, TableSpec

_TYPE_NAMES = {
    "int": "int64",
    "string": "string",
    "bool": "boolean",
    "date": "date (local calendar day)",
    "timestamp": "timestamp with time zone (stored as UTC)",
}

HEADER = """# Data model

Generated from `src/bankgrowth/warehouse/schema.py` by `bankgrowth schema docs --out docs/data-model.md`;
a test fails when the two differ. The specs there are the single source of truth: the warehouse
tables, the Parquet files the simulator writes, and the rules ingest enforces all come from them.

Conventions:

- **Money** is an integer number of fen (1 yuan = 100 fen); never a float.
- **Timestamps** are instants, stored in UTC and shown in the configured timezone (default
  Asia/Shanghai). A CSV value without an offset (`2026-10-01 12:30:00`) is read as local time in
  that zone; `2026-10-01T12:30:00+08:00` and `…Z` are taken as written.
- **Dates** are local calendar days, `YYYY-MM-DD`.
- **Booleans** in CSV: `true/false`, `t/f`, `1/0`, `yes/no` (any case).
- An empty CSV field is a missing value; it is allowed only where *required* says no.
- Personal data (marked *PII*) is masked by default wherever it is shown.
"""

GROUND_TRUTH = """
## Ground truth (simulator only)

`bankgrowth simulate` also writes `truth/customer_truth.parquet` beside the bank data. It is the
simulator's hidden knowledge, **never** loaded into the warehouse and never an input to insight or
models; tests and the demo use it to check measured stages and campaign lift against what really
happened.

| field | meaning |
|---|---|
| `customer_id` | the customer |
| `has_card` | holds a card at this bank (others are phone-only / real-name platform users) |
| `never_transacts` | bound a card but will never transact unless a treatment activates them |
| `txn_rate_per_day` | quick-pay transactions per day while live (before seasonality) |
| `first_bound_at` | first binding; empty if never bound |
| `churn_at` | end of the customer's life (no transaction after it), if within the history |
| `dormant_from`, `dormant_to` | a dormant spell (no transactions), if any |
| `mean_amount_fen` | the customer's typical amount scale, fen |
| `withdrawal_share` | share of transactions that are withdrawals back to the card |
| `baseline_active_14d` | probability of at least one transaction in a 14-day window, untreated |
| `uplift_<treatment>` | true effect of a treatment (`voucher`, `points`, `savings_card`, `message`, `referral_reward`, `binding_reward`): the relative increase of the daily rate over the response window; for a customer who never transacts, the probability the treatment activates them |
| `savings_card_wtp_fen` | the highest savings-card price (fen) the customer would pay |
| `open_rate_<channel>` | probability the customer opens a message on that channel |
"""


def data_model_markdown(specs: Iterable[TableSpec]) -> str:
    parts = [HEADER]
    for spec in specs:
        parts.append(f"\n## `{spec.name}`\n\n{spec.description}\n\nPrimary key: `{spec.primary_key}`.")
        refs = [f"`{fk.column}` → `{fk.table}.{fk.ref_column}`" for fk in spec.foreign_keys]
        refs += [f"`{col}` must belong to the row's `customer_id` (in `{tbl}`)" for col, tbl in spec.same_customer_as]
        refs += [f"`{o.later}` is empty or not before `{o.earlier}`" for o in spec.ordered]
        if refs:
            parts.append("Rules: " + "; ".join(refs) + ".")
        parts.append("\n| field | type | required | unit | allowed values | meaning |\n|---|---|---|---|---|---|")
        for c in spec.columns:
            allowed = ""
            if c.allowed is not None:
                allowed = ", ".join(f"`{a}`" for a in c.allowed)
            elif c.min is not None or c.max is not None:
                allowed = f"{c.min if c.min is not None else '…'} to {c.max if c.max is not None else '…'}"
            elif c.pattern is not None:
                allowed = f"`{c.pattern}`"
            meaning = c.description + (" *PII*" if c.pii else "")
            required = "no" if c.nullable else "yes"
            parts.append(f"| `{c.name}` | {_TYPE_NAMES[c.kind]} | {required} | {c.unit} | {allowed} | {meaning} |")
        if spec.name == "transactions":
            parts.append("\nMerchant category → customer need (衣食住行玩医金融):\n")
            parts.append("| category | need |\n|---|---|")
            parts.extend(f"| `{k}` | {v} |" for k, v in MERCHANT_CATEGORY_NEED.items())
    parts.append(GROUND_TRUTH)
    return "\n".join(parts).rstrip() + "\n"
