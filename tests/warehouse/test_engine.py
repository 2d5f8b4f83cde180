"""The connection layer: what it adds on top of the engines."""

from __future__ import annotations

import time
from pathlib import Path

from bankgrowth.warehouse import engine


def test_statement_progress_is_reported_while_a_long_statement_runs(tmp_path: Path) -> None:
    # given: a table large enough that aggregating it takes a second or more
    con = engine.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    con.raw_sql("CREATE TABLE big AS SELECT i, i % 7 AS j FROM range(50000000) t(i)")  # type: ignore[attr-defined]
    seen: list[float] = []
    # when
    with engine.statement_progress(con, seen.append, every=0.02):
        con.raw_sql(  # type: ignore[attr-defined]
            "CREATE TABLE agg AS SELECT i % 100000 AS k, sum(i) AS s, count(DISTINCT j) AS d FROM big GROUP BY ALL"
        )
    reported = len(seen)
    time.sleep(0.1)
    # then: percentages between 0 and 100, some of them part-way, and none after the block
    assert reported > 0 and all(0 <= p <= 100 for p in seen)
    assert any(0 < p < 100 for p in seen), seen
    assert len(seen) == reported
    # DuckDB's own bar stays off outside the block: the front end draws progress
    raw = con.con  # type: ignore[attr-defined]
    assert raw.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False
    con.disconnect()
