"""The bank summary agrees with an independent computation straight from the files."""

from __future__ import annotations

from decimal import Decimal

import duckdb

from bankgrowth.measurement.kpi import bank_summary
from bankgrowth.warehouse import engine


def test_bank_summary_matches_hand_written_sql(small_bank, loaded_bank) -> None:
    # given
    con = engine.connect(f"duckdb:///{loaded_bank}")
    raw = duckdb.connect()
    raw.execute("SET TimeZone = 'Asia/Shanghai'")
    b = small_bank.bank_dir
    # when
    summary = bank_summary(con)
    con.disconnect()
    [(as_of, n_txn, fen, withdrawal)] = raw.execute(
        f"""SELECT max(txn_at)::DATE, count(*), sum(amount_fen), sum(amount_fen) FILTER (WHERE scene = 'withdrawal')
            FROM '{b}/transactions.parquet'"""
    ).fetchall()
    end = f"(DATE '{as_of}' + 1)::TIMESTAMPTZ"
    [(bound,)] = raw.execute(
        f"""SELECT count(DISTINCT customer_id) FROM '{b}/quickpay_bindings.parquet'
            WHERE bound_at < {end} AND (unbound_at IS NULL OR unbound_at >= {end})"""
    ).fetchall()
    [(active30,)] = raw.execute(
        f"""SELECT count(DISTINCT customer_id) FROM '{b}/transactions.parquet'
            WHERE txn_at >= {end} - INTERVAL 30 DAY AND txn_at < {end}"""
    ).fetchall()
    by_inst = dict(raw.execute(f"SELECT institution, count(*) FROM '{b}/transactions.parquet' GROUP BY 1").fetchall())
    [(supers,)] = raw.execute(
        f"""SELECT count(*) FROM (SELECT customer_id FROM '{b}/transactions.parquet'
            WHERE txn_at >= {end} - INTERVAL 365 DAY AND txn_at < {end} GROUP BY 1 HAVING count(*) > 20)"""
    ).fetchall()
    daily = raw.execute(
        f"""SELECT txn_at::DATE AS day, institution, count(*) FROM '{b}/transactions.parquet'
            WHERE txn_at >= {end} - INTERVAL 30 DAY AND txn_at < {end} GROUP BY 1, 2"""
    ).fetchall()
    # then
    assert summary.as_of == as_of
    assert summary.customers == small_bank.rows["customers"]
    assert (summary.transactions, summary.bound, summary.transacting_30d) == (n_txn, bound, active30)
    assert summary.amount_yuan == Decimal(fen) / 100
    assert summary.withdrawal_yuan == Decimal(withdrawal) / 100
    assert {r.institution: r.transactions for r in summary.by_institution} == by_inst
    assert abs(sum(r.share_of_transactions for r in summary.by_institution) - 1) < 1e-9
    assert summary.super_users == supers > 0
    assert len(summary.by_day) == 30 and summary.by_day[-1].day == as_of
    assert {(d.day, i, n) for d in summary.by_day for i, n in d.by_institution.items()} == set(daily)
    assert sum(d.transactions for d in summary.by_day) == sum(n for *_, n in daily)
