"""The simulator: deterministic, valid, realistic in the ways later work depends on."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from bankgrowth.warehouse import schema
from bankgrowth.warehouse.simulator import TRUTH_SCHEMA, SimulationConfig, simulate

TZ = "Asia/Shanghai"


def test_same_seed_same_bank_other_seed_other_bank(tmp_path: Path) -> None:
    # given
    cfg = dict(customers=1_500, chunk_customers=500)
    a = simulate(SimulationConfig(seed=5, **cfg), tmp_path / "a")  # type: ignore[arg-type]
    b = simulate(SimulationConfig(seed=5, **cfg), tmp_path / "b")  # type: ignore[arg-type]
    c = simulate(SimulationConfig(seed=6, **cfg), tmp_path / "c")  # type: ignore[arg-type]
    # then
    for name in ("customers", "quickpay_bindings", "transactions", "events"):
        ta, tb = pq.read_table(a.bank_dir / f"{name}.parquet"), pq.read_table(b.bank_dir / f"{name}.parquet")
        assert ta.equals(tb), name
    assert pq.read_table(a.truth_dir / "customer_truth.parquet").equals(
        pq.read_table(b.truth_dir / "customer_truth.parquet")
    )
    assert not pq.read_table(a.bank_dir / "transactions.parquet").equals(
        pq.read_table(c.bank_dir / "transactions.parquet")
    )


def test_files_follow_the_canonical_schema_and_truth_is_apart(small_bank) -> None:
    for name, spec in schema.TABLES.items():
        assert pq.read_schema(small_bank.bank_dir / f"{name}.parquet").remove_metadata() == spec.arrow_schema, name
    assert not list(small_bank.bank_dir.glob("*truth*"))
    assert pq.read_schema(small_bank.truth_dir / "customer_truth.parquet").remove_metadata() == TRUTH_SCHEMA


def _sql(bank, query: str):  # type: ignore[no-untyped-def]
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{TZ}'")
    for p in Path(bank.bank_dir).glob("*.parquet"):
        con.execute(f"CREATE VIEW {p.stem} AS SELECT * FROM read_parquet('{p}')")
    con.execute(f"CREATE VIEW truth AS SELECT * FROM read_parquet('{bank.truth_dir}/customer_truth.parquet')")
    return con.execute(query).fetchall()


def test_heterogeneous_activity_gives_super_users_and_inactive_bound_customers(small_bank) -> None:
    [(customers, bound, transacting, supers)] = _sql(
        small_bank,
        """
        WITH n AS (SELECT customer_id, count(*) AS k FROM transactions GROUP BY 1)
        SELECT (SELECT count(*) FROM customers),
               (SELECT count(DISTINCT customer_id) FROM quickpay_bindings),
               (SELECT count(*) FROM n),
               (SELECT count(*) FROM n WHERE k > 20)
        """,
    )
    assert 0.5 < bound / customers < 0.8
    assert 0.3 < transacting / bound < 0.8  # many bound customers never or rarely transact
    assert 0.2 < supers / transacting < 0.8


def test_seasonality_double_11_and_weekends(small_bank) -> None:
    [(peak, ordinary)] = _sql(
        small_bank,
        """
        WITH d AS (SELECT CAST(txn_at AS DATE) AS day, count(*) AS n FROM transactions GROUP BY 1)
        SELECT (SELECT n FROM d WHERE day = DATE '2025-11-11'),
               (SELECT median(n) FROM d WHERE day BETWEEN DATE '2026-03-02' AND DATE '2026-04-30')
        """,
    )
    assert peak > 1.8 * ordinary


def test_no_transaction_after_churn_or_inside_a_dormant_spell_or_before_binding(small_bank) -> None:
    [(after_churn, in_dormancy, before_bind)] = _sql(
        small_bank,
        """
        SELECT count(*) FILTER (WHERE t.txn_at >= g.churn_at),
               count(*) FILTER (WHERE t.txn_at >= g.dormant_from + INTERVAL 1 DAY AND t.txn_at < g.dormant_to - INTERVAL 1 DAY),
               count(*) FILTER (WHERE t.txn_at < g.first_bound_at)
        FROM transactions t JOIN truth g USING (customer_id)
        """,
    )
    assert (after_churn, in_dormancy, before_bind) == (0, 0, 0)


def test_referrers_are_earlier_existing_customers(small_bank) -> None:
    [(referred, bad)] = _sql(
        small_bank,
        """
        SELECT count(*), count(*) FILTER (WHERE r.customer_id IS NULL OR r.registered_on > c.registered_on)
        FROM customers c LEFT JOIN customers r ON r.customer_id = c.referrer_id
        WHERE c.referrer_id IS NOT NULL
        """,
    )
    assert referred > 0 and bad == 0


def test_withdrawals_back_to_card_and_every_institution_present(small_bank) -> None:
    rows = dict(_sql(small_bank, "SELECT institution, count(*) FROM transactions GROUP BY 1"))
    assert set(rows) == set(schema.INSTITUTIONS)
    assert rows["wechat_pay"] > rows["alipay"] > rows["douyin_pay"]
    [(share,)] = _sql(small_bank, "SELECT avg(CASE WHEN scene = 'withdrawal' THEN 1 ELSE 0 END) FROM transactions")
    assert 0.01 < share < 0.15


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="customers"):
        SimulationConfig(customers=0)
    with pytest.raises(ValueError, match="branches"):
        SimulationConfig(branches=40)
    assert SimulationConfig(end_date=date(2026, 1, 31), history_days=31).start_date == date(2026, 1, 1)
