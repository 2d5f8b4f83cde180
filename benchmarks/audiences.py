"""Counting a 5-condition audience: bankgrowth's audience service against hand-written DuckDB SQL
and pandas, in the same run, on the same tag version.

    python -m benchmarks.audiences [--warehouse PATH] [--repeat 30]

The warehouse is the one ``python -m benchmarks.run`` loads (2M customers by default); the benchmark
works on a copy, and runs the nightly insight on it first when it holds no tag version. Variants:

- ``service``: ``audiences.count`` on a saved audience, as the API and CLI call it (scope check,
  definition lookup, freshness check of the profile table, compiled SQL, the scan). The first count
  after a nightly run builds the profile table; it is reported on its own (``first_count_s``), and
  so is the first count of a rule never seen before (``new_rule_ms``: the Ibis compile);
- ``sql``: the same five conditions typed as SQL against the same profile table, through DuckDB;
- ``pandas``: the same conditions on a DataFrame of the five columns (categoricals for the strings),
  already in memory — the cheapest pandas can be.

All three must find the same number of customers. Times are medians (p50) of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RULE = (
    "stage in ('transacting', 'super') and txn_count_30d >= 3 and preferred_institution in ('wechat_pay', 'alipay') "
    "and age between 25 and 45 and city_tier <= 2"
)
SQL = (
    "SELECT count(*) FROM audience_profile WHERE stage IN ('transacting', 'super') AND txn_count_30d >= 3 "
    "AND preferred_institution IN ('wechat_pay', 'alipay') AND age BETWEEN 25 AND 45 AND city_tier <= 2"
)
COLUMNS = ["stage", "txn_count_30d", "preferred_institution", "age", "city_tier"]


def _p50(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def run(warehouse: Path, repeat: int) -> dict[str, Any]:
    from sqlalchemy.orm import Session

    from bankgrowth.audiences import service as audiences
    from bankgrowth.audiences.schemas import AudienceCreate, Definition
    from bankgrowth.config import Settings
    from bankgrowth.insight import service as insight
    from bankgrowth.insight import store as tag_store
    from bankgrowth.operational import db
    from bankgrowth.platform import service as platform_service
    from bankgrowth.warehouse import engine as wh

    with tempfile.TemporaryDirectory(dir=warehouse.parent) as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copy(warehouse, copy)
        con = wh.connect(f"duckdb:///{copy}")
        for table in ("audience_profile", "audience_profile_key"):  # the first count builds them
            con.drop_table(table, force=True)
        if tag_store.latest(con) is None:  # a freshly loaded bank: run insight once (not timed)
            insight.run(con, Settings(data_dir=Path(tmp)), full=True)
        store = db.make_engine(f"sqlite:///{Path(tmp) / 'operational.sqlite'}")
        db.upgrade(store)
        with Session(store) as s:
            platform_service.ensure_root(s)
            s.commit()
            hq = platform_service.system_principal(s, source="benchmark")
            audiences.create(
                s, con, principal=hq, data=AudienceCreate(code="bench5", name_zh="五条件", name_en="Five", text=RULE)
            )
            s.commit()
            started = time.perf_counter()
            first = audiences.count(s, con, principal=hq, code="bench5")
            first_s = time.perf_counter() - started
            variant = RULE.replace(">= 3", ">= 4")  # a rule not compiled yet
            started = time.perf_counter()
            audiences.count_rule(s, con, principal=hq, data=Definition(text=variant))
            new_rule_ms = (time.perf_counter() - started) * 1000
            service_ms, counted = _p50(lambda: audiences.count(s, con, principal=hq, code="bench5").customers, repeat)
        raw = con.con  # type: ignore[attr-defined]
        sql_ms, by_sql = _p50(lambda: raw.execute(SQL).fetchone()[0], repeat)
        frame = raw.execute(f"SELECT {', '.join(COLUMNS)} FROM audience_profile").fetch_df()
        for c in ("stage", "preferred_institution"):
            frame[c] = frame[c].astype("category")

        def pandas_count() -> int:
            f = frame
            keep = (
                f.stage.isin(["transacting", "super"])
                & (f.txn_count_30d >= 3)
                & f.preferred_institution.isin(["wechat_pay", "alipay"])
                & f.age.between(25, 45)
                & (f.city_tier <= 2)
            )
            return int(keep.sum())

        pandas_ms, by_pandas = _p50(pandas_count, repeat)
        customers = int(raw.execute("SELECT count(*) FROM audience_profile").fetchone()[0])
        con.disconnect()
        store.dispose()
    assert counted == by_sql == by_pandas == first.customers, (counted, by_sql, by_pandas, first.customers)
    return {
        "customers": customers,
        "selected": counted,
        "rule": RULE,
        "first_count_s": round(first_s, 2),
        "new_rule_ms": round(new_rule_ms, 1),
        "p50_ms": {"service": round(service_ms, 1), "sql": round(sql_ms, 1), "pandas": round(pandas_ms, 1)},
        "ratio_service_vs_sql": round(service_ms / sql_ms, 2),
        "ratio_service_vs_pandas": round(service_ms / pandas_ms, 2),
        "repeat": repeat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warehouse", type=Path, default=Path("/tmp/bankgrowth-bench/validated.duckdb"))
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/audiences.json"))
    args = parser.parse_args()
    result = run(args.warehouse, args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
