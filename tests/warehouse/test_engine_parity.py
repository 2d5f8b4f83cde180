"""One Ibis expression, two engines: DuckDB and PySpark local give identical results."""

from __future__ import annotations

from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bankgrowth.measurement.kpi import bank_summary
from bankgrowth.warehouse import engine, schema
from bankgrowth.warehouse.timeutil import local_date

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark_warehouse(spark_session, small_bank, tmp_path_factory):  # type: ignore[no-untyped-def]
    db = f"parity_{tmp_path_factory.mktemp('spark').name.replace('-', '_')}"
    spark_session.sql(f"CREATE DATABASE IF NOT EXISTS {db} LOCATION '{tmp_path_factory.mktemp('spark_db')}'")
    spark_session.catalog.setCurrentDatabase(db)
    con = engine.connect("pyspark://active")
    for name in schema.TABLES:
        data = pq.read_table(Path(small_bank.bank_dir) / f"{name}.parquet")
        engine.append_arrow(con, name, data)
    return con


@pytest.fixture(scope="module")
def duck_warehouse(loaded_bank):  # type: ignore[no-untyped-def]
    con = engine.connect(f"duckdb:///{loaded_bank}")
    yield con
    con.disconnect()


def per_customer(con) -> ibis.Table:  # type: ignore[no-untyped-def]
    t = con.table("transactions")
    local_day = local_date(t.txn_at, "Asia/Shanghai")
    return (
        t.group_by("customer_id")
        .aggregate(
            txns=t.count(),
            amount_fen=t.amount_fen.sum(),
            withdrawal_fen=t.amount_fen.sum(where=t.scene == "withdrawal"),
            institutions=t.institution.nunique(),
            first_day=local_day.min(),
            last_at=t.txn_at.max(),
            weekend_txns=(local_day.day_of_week.index() >= 5).sum(),
        )
        .order_by("customer_id")
    )


def test_per_customer_aggregates_are_identical(duck_warehouse, spark_warehouse) -> None:
    # when
    duck = per_customer(duck_warehouse).to_pyarrow()
    spark = per_customer(spark_warehouse).to_pyarrow()
    # then
    assert duck.num_rows > 500
    for name in duck.column_names:
        left, right = duck.column(name), spark.column(name)
        if pa.types.is_timestamp(left.type):
            left, right = left.cast(pa.timestamp("us", "UTC")), right.cast(pa.timestamp("us", "UTC"))
        else:
            left, right = (
                left.cast(pa.int64()) if pa.types.is_integer(left.type) else left,
                (right.cast(pa.int64()) if pa.types.is_integer(right.type) else right),
            )
        assert left.to_pylist() == right.to_pylist(), name


def test_bank_summary_is_identical(duck_warehouse, spark_warehouse) -> None:
    assert bank_summary(duck_warehouse) == bank_summary(spark_warehouse)


def test_ingest_runs_on_spark_with_the_same_verdicts(spark_warehouse, tmp_path: Path) -> None:
    # given: a cards file with a good row, an unknown customer and a bad enum, loaded into Spark
    from bankgrowth.warehouse import ingest

    existing = spark_warehouse.table("customers").customer_id.max().to_pyarrow().as_py()
    cards = tmp_path / "cards.csv"
    cards.write_text(
        "card_id,customer_id,card_type,account_class,opened_on,closed_on\n"
        f"990001,{existing},debit,I,2024-03-01,\n"
        "990002,99999999,debit,I,2024-03-01,\n"
        f"990003,{existing},prepaid,,2024-03-01,\n"
    )
    # when
    report = ingest.load_file(spark_warehouse, cards)
    # then
    assert (report.read, report.loaded, report.quarantined) == (3, 1, 2)
    assert {(p.line, p.field) for p in report.problems} == {(3, "customer_id"), (4, "card_type")}
    t = spark_warehouse.table("cards")
    assert t.filter(t.card_id >= 990001).card_id.to_pyarrow().to_pylist() == [990001]


def test_insight_tags_are_identical_on_both_engines(duck_warehouse, spark_warehouse) -> None:
    # given
    from datetime import date

    from bankgrowth.insight.compute import build_tags

    as_of = date(2026, 10, 31)
    # when
    duck = build_tags(duck_warehouse, as_of).order_by("customer_id").to_pyarrow()
    spark = build_tags(spark_warehouse, as_of).order_by("customer_id").to_pyarrow()
    # then: every tag of every customer, stage and value scores included
    assert duck.column_names == spark.column_names
    assert duck.num_rows == spark.num_rows > 1000
    for name in duck.column_names:
        left_col, right_col = duck.column(name), spark.column(name)
        if pa.types.is_timestamp(left_col.type):  # Spark hands back naive UTC instants
            left_col = left_col.cast(pa.timestamp("us", "UTC"))
            right_col = right_col.cast(pa.timestamp("us", "UTC"))
        left, right = left_col.to_pylist(), right_col.to_pylist()
        if pa.types.is_floating(duck.column(name).type):
            assert all((a is None and b is None) or abs(a - b) < 1e-9 for a, b in zip(left, right, strict=True)), name
        else:
            assert left == right, name


def test_audiences_select_the_same_members_on_both_engines(duck_warehouse, spark_warehouse) -> None:
    # given: the core segments' rules (those that need no stored transitions or other audiences),
    # and rules with behaviour windows, timestamps against local days, and a not over missing values
    from datetime import date

    from bankgrowth.audiences import rules
    from bankgrowth.audiences import service as audiences
    from bankgrowth.audiences.evaluate import Sources, predicate
    from bankgrowth.audiences.segments import CORE_SEGMENTS
    from bankgrowth.insight.compute import build_tags

    as_of = date(2026, 10, 31)
    texts = [s.rule for s in CORE_SEGMENTS if "entered(" not in s.rule and "audience(" not in s.rule]
    texts += [
        "txn_amount(90 days, merchant_category in ('dining', 'grocery'), institution = 'alipay') >= 20000",
        "txn_count(7 days) = 0 and first_bound_at >= '2026-10-01' and not (preferred_institution = 'wechat_pay')",
        "last_txn_at in last 30 days or (weekend_share_90d between 0.3 and 0.8 and not (age > 40))",
    ]
    found = {}
    for name, con in (("duckdb", duck_warehouse), ("pyspark", spark_warehouse)):
        t = build_tags(con, as_of)
        src = Sources(table=t, as_of=as_of, timezone="Asia/Shanghai", transactions=con.table("transactions"))
        # when
        catalog = rules.Catalog(fields=audiences.field_types(t))
        found[name] = [
            sorted(
                t.filter(predicate(rules.normalize_values(rules.parse(text), catalog), src))
                .customer_id.to_pyarrow()
                .to_pylist()
            )
            for text in texts
        ]
    # then
    for text, duck, spark in zip(texts, found["duckdb"], found["pyspark"], strict=True):
        assert duck == spark, text
    assert sum(1 for members in found["duckdb"] if members) >= len(texts) - 1
