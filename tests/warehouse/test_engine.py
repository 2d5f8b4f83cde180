"""The connection layer: what it adds on top of the engines."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bankgrowth.warehouse import engine
from tests.conftest import held


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


def _release_after(holder: subprocess.Popen[str], seconds: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), holder.kill()), daemon=True)
    thread.start()
    return thread


def test_a_file_another_process_holds_is_waited_for_then_opened(tmp_path: Path) -> None:
    # given: a warehouse another process holds for about a second
    path = tmp_path / "w.duckdb"
    engine.connect(f"duckdb:///{path}").disconnect()
    told: list[str] = []
    with held(path) as holder:
        _release_after(holder, 1.0)
        # when
        con = engine.connect(f"duckdb:///{path}", wait=30, on_wait=told.append)
        # then: it opened once the holder was gone (killed, not exited by itself), and said once whom it waited for
        assert holder.wait(timeout=10) == -9
    assert told == [f"the warehouse {path} is in use by process {holder.pid}; waiting up to 30 s for it"]
    assert "customers" in con.list_tables()
    con.disconnect()


def test_a_file_held_past_the_wait_is_refused_as_busy_naming_the_holder(tmp_path: Path) -> None:
    # given
    path = tmp_path / "w.duckdb"
    engine.connect(f"duckdb:///{path}").disconnect()
    with held(path) as holder:
        # when / then: after the wait, and at once without one
        busy = f"the warehouse {path} is in use by process {holder.pid}"
        with pytest.raises(engine.WarehouseBusy, match=re.escape(f"{busy}; waited 0.3 s: try again")):
            engine.connect(f"duckdb:///{path}", wait=0.3)
        with pytest.raises(engine.WarehouseBusy, match=re.escape(f"{busy}: try again")):
            engine.connect(f"duckdb:///{path}")
    # and: a file that is not a database is another error, not waited for
    bad = tmp_path / "not.duckdb"
    bad.write_text("not a database")
    with pytest.raises(engine.WarehouseError, match="cannot open DuckDB warehouse") as raised:
        engine.connect(f"duckdb:///{bad}", wait=30)
    assert not isinstance(raised.value, engine.WarehouseBusy)


def test_a_table_two_requests_create_at_once_is_created_once(tmp_path: Path) -> None:
    # given: six threads with their own connections to one warehouse, as the API's requests have
    # (looking, then creating, as the stores did, failed for all but one of them)
    from concurrent.futures import ThreadPoolExecutor

    import ibis

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine.connect(url).disconnect()
    schema = ibis.schema({"customer_id": "int64", "snapshot_id": "int64"})
    start = threading.Barrier(6)

    def first_use() -> None:
        con = engine.connect(url)
        try:
            start.wait()
            engine.create_if_missing(con, "members", schema)
        finally:
            con.disconnect()

    # when: each finds the table missing and creates it
    with ThreadPoolExecutor(6) as pool:
        outcomes = [f.exception() for f in [pool.submit(first_use) for _ in range(6)]]
    # then: every one goes on, and the table is there
    assert outcomes == [None] * 6
    con = engine.connect(url)
    assert con.table("members").schema() == schema
    con.disconnect()


def test_insert_puts_each_column_under_its_name_from_tables_and_in_memory_rows(tmp_path: Path) -> None:
    # given: a table, and rows whose columns come in another order, from a stored table joined to
    # rows held in memory (which DuckDB sees only once they are registered)
    import ibis

    con = engine.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    con.create_table("target", schema=ibis.schema({"customer_id": "int64", "stage": "string", "n": "int64"}))
    con.create_table("source", ibis.memtable({"customer_id": [1, 2], "n": [5, 7]}))
    labels = ibis.memtable({"cid": [1, 2], "label": ["super", "bound"]})
    source = con.table("source")
    rows = source.join(labels, source.customer_id == labels.cid).select("n", stage="label", customer_id="customer_id")
    # when
    engine.insert(con, "target", rows)
    engine.insert(con, "target", ibis.memtable({"stage": ["churned"], "customer_id": [3]}))
    # then: every value is in its own column; a column not given is NULL
    got = con.table("target").order_by("customer_id").to_pyarrow().to_pylist()
    assert got == [
        {"customer_id": 1, "stage": "super", "n": 5},
        {"customer_id": 2, "stage": "bound", "n": 7},
        {"customer_id": 3, "stage": "churned", "n": None},
    ]
    con.disconnect()
