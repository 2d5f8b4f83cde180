"""Versioned tag tables and the lifecycle transition log in the warehouse.

Each nightly run writes one wide table per as-of day, ``tags_YYYYMMDD``; the set of such tables
is the version list, and versions older than the retention window are dropped. Stage changes
between consecutive versions are appended to ``lifecycle_transitions`` (customer, from, to,
as_of), which is kept for good: it is small, and it is the customers' stage history.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir

from bankgrowth.insight.tags import end_of_day

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

TRANSITIONS = "lifecycle_transitions"
STATE = "tag_window_counts"  # per-(tag, customer, value) window counts: the incremental run's state
STATE_DAY = "tag_window_counts_day"  # the as-of day the state holds; NULL while a run is moving it
RUNS = "insight_runs"
RUNS_SCHEMA = ibis.schema(
    {
        "as_of": "date",
        "mode": "string",
        "reason": "string",
        "fingerprint": "string",
        "seconds": "float64",
        "transactions": "int64",
        "events": "int64",
        "bindings": "int64",
        "unbindings": "int64",
        "customers": "int64",
        "ran_at": "timestamp('UTC')",
    }
)
TRANSITIONS_SCHEMA = ibis.schema(
    {"customer_id": "int64", "from_stage": "string", "to_stage": "string", "as_of": "date"}
)
_VERSION = re.compile(r"^tags_(\d{8})$")


def version_table(as_of: date) -> str:
    return f"tags_{as_of:%Y%m%d}"


def versions(con: BaseBackend) -> list[date]:
    """As-of days with a stored tag table, oldest first."""
    found = []
    for name in con.list_tables():
        m = _VERSION.match(name)
        if m:
            found.append(datetime.strptime(m.group(1), "%Y%m%d").date())  # noqa: DTZ007 - a date, no time
    return sorted(found)


def latest(con: BaseBackend) -> date | None:
    found = versions(con)
    return found[-1] if found else None


def tags_table(con: BaseBackend, as_of: date | None = None) -> ir.Table:
    """The stored tag table of ``as_of`` (default: the latest); LookupError if there is none."""
    day = as_of or latest(con)
    if day is None or version_table(day) not in con.list_tables():
        raise LookupError(
            f"no tag version for {day or 'any day'}; run `bankgrowth insight run`" + (f" --as-of {day}" if day else "")
        )
    return con.table(version_table(day))


def write_version(con: BaseBackend, as_of: date, expr: ir.Table) -> int:
    """Materialise ``expr`` as the version of ``as_of`` (replacing one written before)."""
    name = version_table(as_of)
    con.create_table(name, expr, overwrite=True)
    return int(con.table(name).count().to_pyarrow().as_py())


def record_transitions(con: BaseBackend, as_of: date) -> int:
    """Append the stage changes from the day before to ``as_of``; rerunning a day replaces its rows."""
    if TRANSITIONS not in con.list_tables():
        con.create_table(TRANSITIONS, schema=TRANSITIONS_SCHEMA)
    previous = as_of - timedelta(days=1)
    log = con.table(TRANSITIONS)
    kept = log.filter(log.as_of != as_of)
    if version_table(previous) in con.list_tables():
        before = con.table(version_table(previous)).select(_cid="customer_id", from_stage="stage")
        after = con.table(version_table(as_of)).select("customer_id", to_stage="stage")
        joined = after.left_join(before, after.customer_id == before._cid)
        changes = joined.filter(joined.from_stage.isnull() | (joined.from_stage != joined.to_stage)).select(
            "customer_id",
            from_stage=joined.from_stage.fill_null("new"),
            to_stage=joined.to_stage,
            as_of=ibis.literal(as_of),
        )
        new_log = kept.union(changes)
    else:
        new_log = kept
    scratch = f"_{TRANSITIONS}_next"
    con.create_table(scratch, new_log, overwrite=True)
    con.create_table(TRANSITIONS, con.table(scratch), overwrite=True)
    con.drop_table(scratch, force=True)
    log = con.table(TRANSITIONS)
    return int(log.filter(log.as_of == as_of).count().to_pyarrow().as_py())


def mark_state(con: BaseBackend, day: date | None) -> None:
    """Record the as-of day the window-count state holds (None: being moved, not usable)."""
    con.create_table(STATE_DAY, ibis.memtable({"as_of": [day]}, schema={"as_of": "date"}), overwrite=True)


def state_day(con: BaseBackend) -> date | None:
    if STATE_DAY not in con.list_tables():
        return None
    rows = con.table(STATE_DAY).to_pyarrow().to_pylist()
    return rows[0]["as_of"] if rows else None


def source_counts(con: BaseBackend, as_of: date, timezone: str) -> dict[str, int]:
    """Rows of each source up to the end of ``as_of``. Logged with each run; if they differ the
    next day, data arrived late and yesterday's state no longer describes yesterday."""
    end = ibis.literal(end_of_day(as_of, timezone), type="timestamp('UTC')")
    t, e, b, c = (con.table(n) for n in ("transactions", "events", "quickpay_bindings", "customers"))
    counts = {
        "transactions": t.filter(t.txn_at < end).count(),
        "events": e.filter(e.event_at < end).count(),
        "bindings": b.filter(b.bound_at < end).count(),
        "unbindings": b.filter(b.unbound_at < end).count(),
        "customers": c.filter(c.registered_on <= as_of).count(),
    }
    return {k: int(v.to_pyarrow().as_py()) for k, v in counts.items()}


def log_run(
    con: BaseBackend,
    as_of: date,
    mode: str,
    reason: str,
    fingerprint: str,
    seconds: float,
    counts: dict[str, int],
) -> None:
    if RUNS not in con.list_tables():
        con.create_table(RUNS, schema=RUNS_SCHEMA)
    row = {"as_of": as_of, "mode": mode, "reason": reason, "fingerprint": fingerprint, "seconds": seconds}
    row |= counts
    row["ran_at"] = datetime.now(UTC)
    con.insert(RUNS, ibis.memtable([row], schema=RUNS_SCHEMA))


def logged_run(con: BaseBackend, as_of: date) -> dict[str, Any] | None:
    """The latest logged run of ``as_of``."""
    if RUNS not in con.list_tables():
        return None
    runs = con.table(RUNS)
    rows = runs.filter(runs.as_of == as_of).order_by(ibis.desc("ran_at")).limit(1).to_pyarrow().to_pylist()
    return rows[0] if rows else None


def prune(con: BaseBackend, keep_days: int) -> list[date]:
    """Drop tag versions more than ``keep_days`` older than the newest; returns the dropped days."""
    found = versions(con)
    if not found:
        return []
    cutoff = found[-1] - timedelta(days=keep_days - 1)
    dropped = [d for d in found if d < cutoff]
    for d in dropped:
        con.drop_table(version_table(d), force=True)
    return dropped
