"""Stage rules on a hand-made bank where each customer is built to land in one stage."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from bankgrowth.insight.compute import build_tags
from bankgrowth.insight.lifecycle import Thresholds
from bankgrowth.warehouse import schema
from bankgrowth.warehouse.engine import append_arrow

TZ = ZoneInfo("Asia/Shanghai")
AS_OF = date(2026, 10, 31)
END = datetime(2026, 11, 1, tzinfo=TZ)


def days_ago(n: float) -> datetime:
    return END - timedelta(days=n)


# customer id → (expected stage, bindings [(bound days ago, unbound days ago or None)], transaction ages in days)
CASES: dict[int, tuple[str, list[tuple[float, float | None]], list[float]]] = {
    1: ("unbound", [], []),
    2: ("unbound", [(-1, None)], []),  # binds tomorrow: not yet
    3: ("bound", [(200, None)], []),
    4: ("churned", [(200, 10)], [50]),  # every binding removed
    5: ("churned", [(400, None)], [91, 120, 300]),  # silent for more than 90 days
    6: ("at_risk", [(400, None)], [31, 60]),
    7: ("at_risk", [(400, None)], [89.5]),
    8: ("transacting", [(400, None)], [1, 5, 29.9]),
    9: ("super", [(400, None)], [0.5 + i * 10 for i in range(21)]),  # 21 in 365 days
    10: ("transacting", [(400, None)], [0.5 + i * 10 for i in range(20)]),  # exactly 20: not more than 20
    11: ("won_back", [(400, None)], [3, 25, 200]),  # returned within 30 days after a 175-day gap
    12: ("transacting", [(400, None)], [3, 25, 100]),  # gap of 75 days: never churned
    13: ("transacting", [(400, None)], [3, 45, 200]),  # returned 45 days ago: outside the win-back window
    14: ("bound", [(400, None)], [-0.1]),  # its only transaction is after the as-of day
}


@pytest.fixture
def crafted(warehouse):  # type: ignore[no-untyped-def]
    n = len(CASES)
    ids = list(CASES)
    append_arrow(
        warehouse,
        "branches",
        pa.table(
            {
                "branch_id": ["HQ"],
                "parent_id": pa.array([None], pa.string()),
                "level": ["hq"],
                "name_zh": ["总行"],
                "name_en": ["HQ"],
                "city": ["Beijing"],
                "city_tier": [1],
            }
        ),
    )
    append_arrow(
        warehouse,
        "customers",
        pa.table(
            {
                "customer_id": ids,
                "branch_id": ["HQ"] * n,
                "name": ["x"] * n,
                "phone": ["13800000000"] * n,
                "birth_year": [1990] * n,
                "gender": ["F"] * n,
                "city_tier": [1] * n,
                "registered_on": pa.array([date(2024, 1, 1)] * n, pa.date32()),
                "auth_level": ["account_i"] * n,
                "marketing_consent": [True] * n,
                "referrer_id": pa.array([None] * n, pa.int64()),
            },
            schema=schema.CUSTOMERS.arrow_schema,
        ),
    )
    append_arrow(
        warehouse,
        "cards",
        pa.table(
            {
                "card_id": ids,
                "customer_id": ids,
                "card_type": ["debit"] * n,
                "account_class": ["I"] * n,
                "opened_on": pa.array([date(2024, 1, 1)] * n, pa.date32()),
                "closed_on": pa.array([None] * n, pa.date32()),
            },
            schema=schema.CARDS.arrow_schema,
        ),
    )
    bindings, txns = [], []
    for cid, (_, binds, ages) in CASES.items():
        for bound, unbound in binds:
            bindings.append(
                {
                    "binding_id": len(bindings) + 1,
                    "customer_id": cid,
                    "card_id": cid,
                    "institution": "alipay",
                    "bound_at": days_ago(bound),
                    "unbound_at": None if unbound is None else days_ago(unbound),
                    "bind_channel": "wallet_app",
                    "one_click": False,
                }
            )
        for age in ages:
            txns.append(
                {
                    "txn_id": len(txns) + 1,
                    "customer_id": cid,
                    "card_id": cid,
                    "institution": "alipay",
                    "amount_fen": 1000,
                    "txn_at": days_ago(age),
                    "merchant_category": "dining",
                    "scene": "offline",
                }
            )
    append_arrow(
        warehouse, "quickpay_bindings", pa.Table.from_pylist(bindings, schema=schema.QUICKPAY_BINDINGS.arrow_schema)
    )
    append_arrow(warehouse, "transactions", pa.Table.from_pylist(txns, schema=schema.TRANSACTIONS.arrow_schema))
    return warehouse


def test_each_customer_lands_in_its_stage(crafted) -> None:
    # when
    rows = build_tags(crafted, AS_OF).select("customer_id", "stage").to_pyarrow().to_pylist()
    # then
    got = {r["customer_id"]: r["stage"] for r in rows}
    assert got == {cid: case[0] for cid, case in CASES.items()}


def test_thresholds_are_settings(crafted) -> None:
    # given: a looser churn window (150 days) and a higher super-user bar
    th = Thresholds(at_risk_days=30, churn_days=150, super_user_txns=25, winback_days=30)
    # when
    got = {
        r["customer_id"]: r["stage"]
        for r in build_tags(crafted, AS_OF, thresholds=th).select("customer_id", "stage").to_pyarrow().to_pylist()
    }
    # then
    assert got[5] == "at_risk"  # 91 days of silence is no longer churn
    assert got[9] == "transacting"  # 21 transactions are no longer "more than 25"
    assert got[11] == "won_back"  # 175-day gap is still more than 150


def test_an_earlier_as_of_day_sees_only_earlier_data(crafted) -> None:
    got = {r["customer_id"]: r for r in build_tags(crafted, AS_OF - timedelta(days=30)).to_pyarrow().to_pylist()}
    assert got[8]["stage"] == "bound"  # its transactions are all later than that day
    assert got[8]["txn_count_365d"] == 0
    # the unbinding 10 days before AS_OF has not happened yet, and its transaction was 20 days before
    assert (got[4]["bindings_live"], got[4]["stage"]) == (1, "transacting")
