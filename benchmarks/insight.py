"""Insight benchmark: lifecycle + RFM through bankgrowth's Ibis expressions against hand-written
DuckDB SQL and pandas doing the same work, in the same run, on the same warehouse.

    python -m benchmarks.insight [--warehouse /tmp/bankgrowth-bench/validated.duckdb] [--as-of 2026-10-31]
                                 [--repeat 2] [--variants sql ibis pandas full incremental floor]
                                 [--history-days 1] [--memory-limit 1GB]

The warehouse is the one ``python -m benchmarks.run`` loads (2M customers / 50M transactions by
default). Each variant materialises a table of (customer_id, stage, rfm_r, rfm_f, rfm_m, rfc_c);
the results are compared row by row. The nightly run (every tag, stored as a version) is timed in
full and incrementally from the day before, each on its own copy of the warehouse, and the two
versions, window-count states and transition logs are compared; each also reads the new version
whole, as the audience profile does. The ``floor`` variant is a lower bound for any incremental
run that keeps each customer's values in a stored row: hand-written DuckDB SQL of only the steps
whose size the day's data fixes (see :func:`floor_sql`), on the same copy; its moving tags are
compared with the nightly run's. ``--history-days 35`` first stores 35 daily versions (the
default retention), so both runs meet the history a bank running daily would have. Each variant
runs in its own process so its peak memory is its own. Peak memory includes DuckDB's cache of the
blocks it read, which it keeps up to its memory limit (default: a quarter of physical memory);
``--memory-limit`` sets the limit of every DuckDB variant, to see what a run needs rather than
what it was allowed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from queue import Empty
from typing import Any

VARIANTS = ("sql", "ibis", "pandas", "full", "incremental", "floor")
OUT_COLUMNS = ["customer_id", "stage", "rfm_r", "rfm_f", "rfm_m", "rfc_c"]

SQL = """
CREATE OR REPLACE TABLE bench_sql AS
WITH c AS (SELECT customer_id FROM customers WHERE registered_on <= DATE '{as_of}'),
t AS (
  SELECT customer_id,
         max(txn_at) AS last_txn_at,
         count(*) FILTER (WHERE txn_at >= TIMESTAMPTZ '{end}' - INTERVAL 365 DAY) AS n365,
         sum(amount_fen) FILTER (WHERE txn_at >= TIMESTAMPTZ '{end}' - INTERVAL 365 DAY) AS amt365,
         sum(amount_fen) FILTER (WHERE txn_at >= TIMESTAMPTZ '{end}' - INTERVAL 365 DAY
                                   AND scene IN ('online', 'offline', 'withdrawal')) AS contrib365,
         max(txn_at) FILTER (WHERE txn_at < TIMESTAMPTZ '{end}' - INTERVAL {winback} DAY) AS before_wb,
         min(txn_at) FILTER (WHERE txn_at >= TIMESTAMPTZ '{end}' - INTERVAL {winback} DAY) AS in_wb
  FROM transactions WHERE txn_at < TIMESTAMPTZ '{end}' GROUP BY customer_id
),
b AS (
  SELECT customer_id,
         count(*) FILTER (WHERE bound_at < TIMESTAMPTZ '{end}') AS ever,
         count(*) FILTER (WHERE bound_at < TIMESTAMPTZ '{end}'
                          AND (unbound_at IS NULL OR unbound_at >= TIMESTAMPTZ '{end}')) AS live
  FROM quickpay_bindings GROUP BY customer_id
),
w AS (
  SELECT c.customer_id, coalesce(b.ever, 0) AS ever, coalesce(b.live, 0) AS live, t.last_txn_at,
         coalesce(t.n365, 0) AS n365, coalesce(t.amt365, 0) AS amt365, coalesce(t.contrib365, 0) AS contrib365,
         t.before_wb, t.in_wb
  FROM c LEFT JOIN t USING (customer_id) LEFT JOIN b USING (customer_id)
),
s AS (
  SELECT customer_id, n365,
    CASE
      WHEN ever = 0 THEN 'unbound'
      WHEN live = 0 THEN 'churned'
      WHEN last_txn_at IS NULL THEN 'bound'
      WHEN last_txn_at < TIMESTAMPTZ '{end}' - INTERVAL {churn} DAY THEN 'churned'
      WHEN in_wb IS NOT NULL AND before_wb IS NOT NULL
           AND epoch(in_wb) - epoch(before_wb) > {churn} * 86400 THEN 'won_back'
      WHEN last_txn_at < TIMESTAMPTZ '{end}' - INTERVAL {at_risk} DAY THEN 'at_risk'
      WHEN n365 > {super_txns} THEN 'super'
      ELSE 'transacting'
    END AS stage,
    last_txn_at, amt365, contrib365
  FROM w
),
r AS (
  SELECT customer_id,
         ntile(5) OVER (ORDER BY last_txn_at, customer_id) AS rfm_r,
         ntile(5) OVER (ORDER BY n365, customer_id) AS rfm_f,
         ntile(5) OVER (ORDER BY amt365, customer_id) AS rfm_m,
         ntile(5) OVER (ORDER BY contrib365, customer_id) AS rfc_c
  FROM s WHERE n365 > 0
)
SELECT s.customer_id, s.stage, r.rfm_r, r.rfm_f, r.rfm_m, r.rfc_c FROM s LEFT JOIN r USING (customer_id)
"""


# whole seconds truncated, as bankgrowth.warehouse.timeutil does (epoch()::BIGINT would round)
_LOCAL_SECONDS = "(epoch_us(txn_at) // 1000000 + 28800)"  # Asia/Shanghai
_NIGHT = f"({_LOCAL_SECONDS} // 3600) % 24"
_WEEKDAY = f"(({_LOCAL_SECONDS} // 86400 + 3) % 7)"  # Monday = 0

# The windowed count and sum tags that move by adding the entering day and subtracting the leaving
# one: (source, aggregate, predicate, days, lag). The predicates are the tags' own, in SQL.
FLOOR_TAGS: dict[str, tuple[str, str, str, int, int]] = {
    **{f"txn_count_{d}d": ("transactions", "count", "TRUE", d, 0) for d in (7, 30, 90, 365)},
    **{f"txn_amount_{d}d": ("transactions", "sum", "TRUE", d, 0) for d in (7, 30, 90, 365)},
    "txn_count_prev_30d": ("transactions", "count", "TRUE", 30, 30),
    "weekend_txns_90d": ("transactions", "count", f"{_WEEKDAY} >= 5", 90, 0),
    "night_txns_90d": ("transactions", "count", f"{_NIGHT} >= 22 OR {_NIGHT} < 6", 90, 0),
    "online_txns_90d": ("transactions", "count", "scene = 'online'", 90, 0),
    "withdrawal_count_90d": ("transactions", "count", "scene = 'withdrawal'", 90, 0),
    "withdrawal_amount_90d": ("transactions", "sum", "scene = 'withdrawal'", 90, 0),
    "withdrawal_amount_365d": ("transactions", "sum", "scene = 'withdrawal'", 365, 0),
    "contribution_365d": ("transactions", "sum", "scene IN ('online', 'offline', 'withdrawal')", 365, 0),
    "logins_30d": ("events", "count", "event_type = 'login'", 30, 0),
    "events_30d": ("events", "count", "TRUE", 30, 0),
    "shares_90d": ("events", "count", "event_type = 'share'", 90, 0),
    "coupon_views_30d": ("events", "count", "event_type = 'coupon_view'", 30, 0),
}


def floor_tags() -> dict[str, tuple[str, str, str, int, int]]:
    """:data:`FLOOR_TAGS` and the spend-per-need tags, one per need of the merchant categories."""
    from bankgrowth.warehouse.schema import MERCHANT_CATEGORY_NEED

    tags = dict(FLOOR_TAGS)
    for need in sorted(set(MERCHANT_CATEGORY_NEED.values())):
        cats = ", ".join(f"'{c}'" for c, n in MERCHANT_CATEGORY_NEED.items() if n == need)
        where = f"merchant_category IN ({cats}) AND scene IN ('online', 'offline')"
        tags[f"spend_{need}_365d"] = ("transactions", "sum", where, 365, 0)
    return tags


def floor_sql(as_of: date, columns: Sequence[str]) -> list[tuple[str, str]]:
    """(step, SQL) of the least an incremental night must do when each customer's values are a
    stored row: read the rows of the six days a window moves over, aggregate each moving tag's
    entering and leaving day per customer, assemble the changed customers' rows from their stored
    ones (``columns``: the stored value columns), and write them (the old rows to the history, the
    new ones current). Left out, so that it stays a lower bound: the window-count state of the
    distinct-count and mode tags, the tags recomputed from a window, bindings, referrals, new
    customers, the stage changes, the stage counts, the cut points, the run log and all Python."""
    from bankgrowth.insight.tags import end_of_day

    tags = floor_tags()
    end = f"TIMESTAMPTZ '{end_of_day(as_of, 'Asia/Shanghai').isoformat()}'"
    steps: list[tuple[str, str]] = []
    for source, time_col, short in (("transactions", "txn_at", "t"), ("events", "event_at", "e")):
        mine = {n: v for n, v in tags.items() if v[0] == source}
        days = sorted({k for (_, _, _, d, lag) in mine.values() for k in (lag, lag + d)})

        def span(k: int, col: str = time_col) -> str:
            return f"({col} >= {end} - INTERVAL {k + 1} DAY AND {col} < {end} - INTERVAL {k} DAY)"

        label = "CASE " + " ".join(f"WHEN {span(k)} THEN {k}" for k in days) + " END"
        wanted = " OR ".join(span(k) for k in days)
        steps.append(
            (
                f"the moving days of {source}",
                f"CREATE TEMP TABLE floor_{short}d AS SELECT *, {label} AS _k FROM {source} WHERE {wanted}",
            )
        )
        aggs = []
        for name, (_, fn, where, d, lag) in mine.items():
            for suffix, k in (("e", lag), ("l", lag + d)):
                value = "*" if fn == "count" else "amount_fen"
                aggs.append(f"{fn}({value}) FILTER (WHERE _k = {k} AND ({where})) AS {name}__{suffix}")
        steps.append(
            (
                f"the deltas of {source}",
                f"CREATE TEMP TABLE floor_{short} AS SELECT customer_id, {', '.join(aggs)} FROM floor_{short}d GROUP BY customer_id",
            )
        )
    moved = []
    for c in columns:
        if c in tags:
            d = "floor_t" if tags[c][0] == "transactions" else "floor_e"
            moved.append(f"coalesce(p.{c}, 0) + coalesce({d}.{c}__e, 0) - coalesce({d}.{c}__l, 0) AS {c}")
        else:
            moved.append(f"p.{c}")
    steps.append(
        (
            "assembling the changed rows",
            (
                "CREATE TEMP TABLE floor_rows AS SELECT p.customer_id, " + ", ".join(moved) + " FROM tag_current p "
                "JOIN (SELECT customer_id FROM floor_t UNION SELECT customer_id FROM floor_e) USING (customer_id) "
                "LEFT JOIN floor_t USING (customer_id) LEFT JOIN floor_e USING (customer_id)"
            ),
        )
    )
    names = ", ".join(columns)
    which = "WHERE customer_id IN (SELECT customer_id FROM floor_rows)"
    steps.append(
        (
            "writing them",
            (
                f"BEGIN; INSERT INTO tag_history (customer_id, valid_from, valid_to, {names}) "
                f"SELECT customer_id, valid_from, DATE '{as_of}', {names} FROM tag_current {which}; "
                f"DELETE FROM tag_current {which}; INSERT INTO tag_current (customer_id, valid_from, {names}) "
                f"SELECT customer_id, DATE '{as_of}', {names} FROM floor_rows; COMMIT"
            ),
        )
    )
    steps.append(("checkpoint", "CHECKPOINT"))
    return steps


def _url(path: Path | str, args: dict[str, Any]) -> str:
    limit = args.get("memory_limit")
    return f"duckdb:///{path}" + (f"?memory_limit={limit}" if limit else "")


def _run(variant: str, args: dict[str, Any], queue: Any) -> None:
    from bankgrowth.insight.lifecycle import Thresholds
    from bankgrowth.insight.tags import end_of_day

    as_of = date.fromisoformat(args["as_of"])
    th = Thresholds()
    started = time.perf_counter()
    peak: float | None = None
    if variant == "ibis":
        from bankgrowth.insight.compute import STAGE_INPUTS, build_tags
        from bankgrowth.insight.tags import BUILTIN_TAGS
        from bankgrowth.warehouse import engine

        con = engine.connect(_url(args["warehouse"], args))
        started = time.perf_counter()
        tags = [t for t in BUILTIN_TAGS if t.name in STAGE_INPUTS]
        expr = build_tags(con, as_of, tags=tags).select(*OUT_COLUMNS)
        con.create_table("bench_ibis", expr, overwrite=True)
        seconds = time.perf_counter() - started
        con.disconnect()
    elif variant in ("prepare", "full", "incremental"):
        # the nightly run as the service does it (every tag, the stored version, the transitions,
        # the run log), each on its own copy of a warehouse whose day before was run in full
        import shutil
        from datetime import timedelta

        from bankgrowth.config import Settings
        from bankgrowth.insight import service, store
        from bankgrowth.warehouse import engine

        settings = Settings(data_dir=Path(args["warehouse"]).parent)
        if variant == "prepare":
            # the days before as-of: a full run on the first, then a nightly run a day, so the
            # history holds as many versions as a bank running daily would keep
            shutil.copy(args["warehouse"], nightly(args, "prev"))
            con = engine.connect(_url(nightly(args, "prev"), args))
            for back in range(args["history_days"], 0, -1):
                report = service.run(con, settings, as_of=as_of - timedelta(days=back))
                print(f"  prepared {report.as_of} ({report.mode}, {time.perf_counter() - started:.0f} s)", flush=True)
            con.disconnect()
            queue.put({"seconds": time.perf_counter() - started, "peak_rss_mib": 0.0})
            return
        shutil.copy(nightly(args, "prev"), nightly(args, variant))
        con = engine.connect(_url(nightly(args, variant), args))
        started = time.perf_counter()
        report = service.run(con, settings, as_of=as_of, full=variant != "incremental")
        ran = time.perf_counter() - started
        # Timed to the run's writes being in the database file. A full run writes enough for
        # DuckDB to checkpoint as it commits; an incremental run's writes can stay in the
        # write-ahead log, and folding them in would otherwise fall on the next to open the file.
        con.raw_sql("CHECKPOINT")
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the run's, not the read's below
        if variant == "incremental" and report.mode != "incremental":
            raise SystemExit(f"the nightly run fell back to a full run: {report.reason}")
        # reading the new version whole, as the audience profile does once a night
        began = time.perf_counter()
        store.tags_table(con, as_of).to_pyarrow()
        read = time.perf_counter() - began
        con.create_table(f"bench_{variant}", store.tags_table(con, as_of), overwrite=True)  # for the comparison
        history = con.table(store.HISTORY).count().to_pyarrow().as_py()
        print(
            f"  {variant}: {ran:.1f} s run + {seconds - ran:.1f} s checkpoint; "
            f"{report.changed:,} of {report.customers:,} customers' rows written; "
            f"the version read whole in {read:.2f} s ({history:,} replaced rows kept)",
            flush=True,
        )
        con.disconnect()
    elif variant == "floor":
        import shutil

        import duckdb

        shutil.copy(nightly(args, "prev"), nightly(args, variant))
        con = duckdb.connect(str(nightly(args, variant)))
        if args.get("memory_limit"):
            con.execute(f"SET memory_limit = '{args['memory_limit']}'")
        con.execute("SET enable_progress_bar = false")
        columns = [r[0] for r in con.execute("DESCRIBE tag_current").fetchall()][2:]
        steps = floor_sql(as_of, columns)
        started = time.perf_counter()
        took = []
        for what, sql in steps:
            began = time.perf_counter()
            con.execute(sql)
            took.append(f"{what} {time.perf_counter() - began:.2f} s")
        seconds = time.perf_counter() - started
        rows = con.execute("SELECT count(*) FROM floor_rows").fetchone()[0]  # type: ignore[index]
        print(f"  floor: {rows:,} customers' rows written; " + ", ".join(took), flush=True)
        con.close()
    elif variant == "sql":
        import duckdb

        con = duckdb.connect(args["warehouse"])
        if args.get("memory_limit"):
            con.execute(f"SET memory_limit = '{args['memory_limit']}'")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        started = time.perf_counter()
        con.execute(
            SQL.format(
                end=end_of_day(as_of, "Asia/Shanghai").isoformat(),
                as_of=as_of.isoformat(),
                winback=th.winback_days,
                churn=th.churn_days,
                at_risk=th.at_risk_days,
                super_txns=th.super_user_txns,
            )
        )
        seconds = time.perf_counter() - started
        con.close()
    else:  # pandas
        import duckdb
        import numpy as np
        import pandas as pd

        con = duckdb.connect(args["warehouse"], read_only=True)
        tx = con.execute("SELECT customer_id, txn_at, amount_fen, scene FROM transactions").df()
        bd = con.execute("SELECT customer_id, bound_at, unbound_at FROM quickpay_bindings").df()
        cu = con.execute(f"SELECT customer_id FROM customers WHERE registered_on <= DATE '{as_of}'").df()
        con.close()
        started = time.perf_counter()  # the work, not the read
        end = pd.Timestamp(end_of_day(as_of, "Asia/Shanghai")).tz_convert("UTC")
        tx = tx[tx.txn_at < end]
        in365 = tx.txn_at >= end - pd.Timedelta(days=365)
        wb = end - pd.Timedelta(days=th.winback_days)
        tx = tx.assign(
            n365=in365.astype("int64"),
            amt365=np.where(in365, tx.amount_fen, 0),
            contrib=np.where(in365 & tx.scene.isin(["online", "offline", "withdrawal"]), tx.amount_fen, 0),
            before=tx.txn_at.where(tx.txn_at < wb),
            inwb=tx.txn_at.where(tx.txn_at >= wb),
        )
        g = tx.groupby("customer_id").agg(
            last_txn_at=("txn_at", "max"),
            n365=("n365", "sum"),
            amt365=("amt365", "sum"),
            contrib365=("contrib", "sum"),
            before_wb=("before", "max"),
            in_wb=("inwb", "min"),
        )
        live = (bd.bound_at < end) & (bd.unbound_at.isna() | (bd.unbound_at >= end))
        b = (
            bd.assign(ever=(bd.bound_at < end).astype("int64"), live=live.astype("int64"))
            .groupby("customer_id")[["ever", "live"]]
            .sum()
        )
        w = cu.set_index("customer_id").join(g).join(b)
        w[["ever", "live", "n365", "amt365", "contrib365"]] = w[
            ["ever", "live", "n365", "amt365", "contrib365"]
        ].fillna(0)
        day = pd.Timedelta(days=1)
        returned = (
            w.in_wb.notna() & w.before_wb.notna() & ((w.in_wb - w.before_wb).dt.total_seconds() > th.churn_days * 86400)
        )
        w["stage"] = np.select(
            [
                w.ever == 0,
                w.live == 0,
                w.last_txn_at.isna(),
                w.last_txn_at < end - th.churn_days * day,
                returned,
                w.last_txn_at < end - th.at_risk_days * day,
                w.n365 > th.super_user_txns,
            ],
            ["unbound", "churned", "bound", "churned", "won_back", "at_risk", "super"],
            default="transacting",
        )
        active = w[w.n365 > 0].reset_index()
        for col, src in (("rfm_r", "last_txn_at"), ("rfm_f", "n365"), ("rfm_m", "amt365"), ("rfc_c", "contrib365")):
            order = active.sort_values([src, "customer_id"]).index
            n = len(active)
            ranks = np.empty(n, dtype=np.int64)
            ranks[order] = np.arange(n)
            # ntile(5): the first n % 5 groups get one extra row
            size, extra = divmod(n, 5)
            bounds = np.cumsum([size + (1 if i < extra else 0) for i in range(5)])
            active[col] = np.searchsorted(bounds, ranks, side="right") + 1
        result = w.reset_index()[["customer_id", "stage"]].merge(
            active[["customer_id", "rfm_r", "rfm_f", "rfm_m", "rfc_c"]], how="left"
        )
        seconds = time.perf_counter() - started
        result.to_parquet(Path(args["warehouse"]).with_name("bench_pandas.parquet"))
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_rss_mib": peak})


def nightly(args: dict[str, Any], name: str) -> Path:
    return Path(args["warehouse"]).with_name(f"nightly_{name}.duckdb")


def run_variant(variant: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(variant, args, queue))
    proc.start()
    while True:
        try:
            out: dict[str, Any] = queue.get(timeout=5)
            break
        except Empty:
            if not proc.is_alive():
                raise SystemExit(f"the {variant} variant failed (exit code {proc.exitcode})") from None
    proc.join()
    return out


def _same(args: dict[str, Any], variants: Sequence[str]) -> dict[str, bool]:
    import duckdb

    con = duckdb.connect(args["warehouse"], read_only=True)
    cols = ", ".join(OUT_COLUMNS)
    pandas_file = Path(args["warehouse"]).with_name("bench_pandas.parquet")
    ran = set(variants)
    checks = {}
    if {"sql", "ibis"} <= ran:
        checks["ibis == sql"] = f"SELECT {cols} FROM bench_ibis EXCEPT SELECT {cols} FROM bench_sql"
        checks["sql == ibis"] = f"SELECT {cols} FROM bench_sql EXCEPT SELECT {cols} FROM bench_ibis"
    if {"sql", "pandas"} <= ran:
        checks["pandas == sql"] = (
            f"SELECT {cols} FROM read_parquet('{pandas_file}') EXCEPT SELECT {cols} FROM bench_sql"
        )
    if "full" in ran:
        con.execute(f"ATTACH '{nightly(args, 'full')}' AS f (READ_ONLY)")
        if "sql" in ran:
            checks["full run == sql"] = f"SELECT {cols} FROM f.bench_full EXCEPT SELECT {cols} FROM bench_sql"
    if "incremental" in ran:
        con.execute(f"ATTACH '{nightly(args, 'incremental')}' AS i (READ_ONLY)")
    if {"full", "incremental"} <= ran:
        both = "(SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) UNION ALL (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a})"
        checks["incremental == full (every column)"] = both.format(a="i.bench_incremental", b="f.bench_full")
        checks["state == full state"] = both.format(a="i.tag_window_counts", b="f.tag_window_counts")
        checks["transitions == full transitions"] = both.format(
            a="i.lifecycle_transitions", b="f.lifecycle_transitions"
        )
    if {"incremental", "floor"} <= ran:
        # the floor's moving tags for every customer it holds, against the nightly run's: the
        # floor leaves out new customers, so its rows are compared where both have them
        con.execute(f"ATTACH '{nightly(args, 'floor')}' AS fl (READ_ONLY)")
        stored = {r[0] for r in con.execute("DESCRIBE fl.tag_current").fetchall()}
        moving = ", ".join(["customer_id", *(t for t in floor_tags() if t in stored)])
        checks["floor == incremental (its moving tags)"] = (
            f"(SELECT {moving} FROM fl.tag_current EXCEPT ALL SELECT {moving} FROM i.tag_current) UNION ALL "
            f"(SELECT {moving} FROM i.tag_current WHERE customer_id IN (SELECT customer_id FROM fl.tag_current) "
            f"EXCEPT ALL SELECT {moving} FROM fl.tag_current)"
        )
    out = {name: con.execute(f"SELECT count(*) FROM ({q})").fetchone()[0] == 0 for name, q in checks.items()}  # type: ignore[index]
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default="/tmp/bankgrowth-bench/validated.duckdb")
    parser.add_argument("--as-of", default="2026-10-31")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each variant; the best is kept")
    parser.add_argument(
        "--history-days",
        type=int,
        default=1,
        help="daily versions stored before the as-of day (the first a full run); 35 is the default retention",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="a subset to run (default: all)"
    )
    parser.add_argument(
        "--memory-limit", help="DuckDB's memory limit for every DuckDB variant, e.g. 1GB (default: its own default)"
    )
    a = parser.parse_args()
    args = {"warehouse": a.warehouse, "as_of": a.as_of, "history_days": a.history_days, "memory_limit": a.memory_limit}
    if {"full", "incremental", "floor"} & set(a.variants):
        run_variant("prepare", args)
        print(f"prepared: {a.history_days} daily version(s) before {a.as_of} on a copy")
    # rounds of every variant in turn, not every run of one variant then the next: this machine's
    # speed drifts over minutes, and the best of interleaved runs compares like with like
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in a.variants}
    for _ in range(a.repeat):
        for variant in a.variants:
            runs[variant].append(run_variant(variant, args))
    results = {v: min(r, key=lambda x: x["seconds"]) for v, r in runs.items()}
    for variant, best in results.items():
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs[variant])
        print(f"{variant:>6}: {best['seconds']:6.1f} s (runs: {seconds}), peak memory {best['peak_rss_mib']:,.0f} MiB")
    ratios = {
        "ibis / hand-written SQL (lifecycle + RFM)": ("ibis", "sql"),
        "pandas / hand-written SQL": ("pandas", "sql"),
        "full nightly run (all tags) / hand-written SQL of lifecycle + RFM": ("full", "sql"),
        "incremental daily run / full run": ("incremental", "full"),
        "floor of an incremental run (hand-written SQL) / full run": ("floor", "full"),
    }
    for label, (a_, b_) in ratios.items():
        if a_ in results and b_ in results:
            print(f"ratio {label}: {results[a_]['seconds'] / results[b_]['seconds']:.2f}")
    same = _same(args, a.variants)
    print("identical results: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    for name in ("prev", "full", "incremental", "floor"):
        nightly(args, name).unlink(missing_ok=True)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/insight.json").write_text(json.dumps({"results": results, "identical": same}, indent=2))


if __name__ == "__main__":
    main()
