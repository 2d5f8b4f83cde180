"""Versioned tag tables and the lifecycle transition log in the warehouse.

A tag version exists for each as-of day a run wrote, back to the retention window. Versions are
not stored as one wide table per day — writing 2M wide rows costs a tenth of a full run on its
own — but as validity intervals: a row holds a customer's stored values (profile columns and
aggregate tags) from ``valid_from`` until the day before ``valid_to``. Each customer's current
row is in ``tag_current`` (no ``valid_to``: still valid); when a run changes a customer's values,
the old row moves to ``tag_history`` with ``valid_to`` set to that day and the new one takes its
place. A nightly run moves only the customers whose values changed that day, so its write
follows the day's data; the latest version is the current table alone, a table of one row per
customer, and ``tag_history`` is appended in ``valid_to`` order, so reading an older version
skips the blocks closed before it.

Reading a version (:func:`tags_table`) selects the rows valid on that day and computes the rest
on the fly: profile tags (age and tenure move with the date), derived tags, the stage, and the
value scores from the quintile cut points stored with the version in ``tag_versions`` (which also
records the thresholds and timezone the version was computed with).

Stage changes between consecutive versions are appended to ``lifecycle_transitions`` (customer,
from, to, as_of, since: the version compared with — the day before, unless days were not run),
which is kept for good: it is small, and it is the customers' stage history. So are the counts
of each version's customers by branch and stage in ``lifecycle_daily``: the lifecycle trend
reaches back past the versions kept, and a day's distribution is read without its version.

A run stores its version, its stage changes, the day its window-count state holds and its log
entry in one transaction (:func:`transaction`): a run killed part-way leaves none of them, so the
next run neither builds on a half-stored day nor misses that day's stage changes.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir

from bankgrowth.insight import imported
from bankgrowth.insight.compute import base_columns, present
from bankgrowth.insight.lifecycle import Thresholds, stage_expr
from bankgrowth.insight.tags import BUILTIN_TAGS, Tag, context, end_of_day
from bankgrowth.insight.value import SCORED, cut_points, scores_from_cuts
from bankgrowth.warehouse.engine import insert, materialise

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ibis.backends import BaseBackend

CURRENT = "tag_current"  # each customer's current row
HISTORY = "tag_history"  # rows replaced since, with the day they were (valid_to)
VERSIONS = "tag_versions"
VERSIONS_SCHEMA = ibis.schema(
    {
        "as_of": "date",
        "customers": "int64",
        "changed": "int64",
        "timezone": "string",
        "thresholds": "string",
        "cuts": "string",
        "written_at": "timestamp('UTC')",
    }
)
TRANSITIONS = "lifecycle_transitions"
DAILY = "lifecycle_daily"  # customers per (day, branch on that day, stage), kept after the versions
DAILY_SCHEMA = ibis.schema({"as_of": "date", "branch_id": "string", "stage": "string", "customers": "int64"})
STATE = "tag_window_counts"  # per-(tag, customer, value) window counts: the incremental run's state
STATE_DAY = "tag_window_counts_day"  # the as-of day the state holds; NULL while a run is moving it
RUNS = "insight_runs"
STORING = "storing the version"  # the step of writing computed rows into the history
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
        # data of earlier days had arrived since they were run: the versions from this day to the
        # day before this run's were computed without it (null: none)
        "stale_from": "date",
        "written": "int64",  # customers whose stored row the run wrote (null: logged before it was)
    }
)
# columns added to the log since it was first written, in the order they were added
LATER_RUN_COLUMNS = {"stale_from": "DATE", "written": "BIGINT"}
TRANSITIONS_SCHEMA = ibis.schema(
    {"customer_id": "int64", "from_stage": "string", "to_stage": "string", "as_of": "date", "since": "date"}
)


def versions(con: BaseBackend) -> list[date]:
    """As-of days with a stored tag version, oldest first."""
    if VERSIONS not in con.list_tables():
        return []
    v = con.table(VERSIONS)
    return sorted(v.as_of.to_pyarrow().to_pylist())


def latest(con: BaseBackend) -> date | None:
    found = versions(con)
    return found[-1] if found else None


def _missing(day: date | None, kept: Sequence[date]) -> LookupError:
    """The error for a day with no version: which days are kept, and the command that makes one."""
    if not kept:
        held = "none is stored yet"
    elif len(kept) <= 5:
        held = "kept: " + ", ".join(str(d) for d in kept)
    else:
        held = f"kept: {len(kept)} versions from {kept[0]} to {kept[-1]}"
    command = "bankgrowth insight run" + (f" --as-of {day}" if day else "")
    if day is not None and kept and day < kept[-1]:  # a run of it would replace the later versions
        return LookupError(
            f"no tag version for {day} ({held}); `bankgrowth insight lifecycle --as-of {day}` (or `insight "
            f"grid`) computes its stages without storing them, and `{command} --replace-later` stores it, "
            "replacing the versions after it"
        )
    return LookupError(f"no tag version for {day or 'any day'} ({held}); run `{command}`")


def _version(con: BaseBackend, day: date | None) -> dict[str, Any]:
    day = day or latest(con)
    if day is not None and VERSIONS in con.list_tables():
        v = con.table(VERSIONS)
        rows = v.filter(v.as_of == day).to_pyarrow().to_pylist()
        if rows:
            return rows[0]
    raise _missing(day, versions(con))  # the kept days are only read for the error


def stored_rows(con: BaseBackend, day: date) -> ir.Table:
    """The stored rows valid on ``day``: customer_id and the base columns."""
    tables = con.list_tables()
    h = con.table(HISTORY)
    if CURRENT not in tables:  # a warehouse whose versions were all written before tag_current
        valid = h.filter(h.valid_from <= day, h.valid_to.isnull() | (h.valid_to > day))
        return valid.drop("valid_from", "valid_to")
    c = con.table(CURRENT)
    current = c.filter(c.valid_from <= day).drop("valid_from")
    replaced = h.filter(h.valid_from <= day, h.valid_to > day).select(*current.columns)
    return current.union(replaced, distinct=False)


def _decode_cuts(text: str) -> dict[str, list[tuple[Any, int]]]:
    raw = json.loads(text)
    out: dict[str, list[tuple[Any, int]]] = {}
    for score, pairs in raw.items():
        timestamp = SCORED[score] == "last_txn_at"
        out[score] = [(datetime.fromisoformat(v) if timestamp else v, k) for v, k in pairs]
    return out


def _encode_cuts(cuts: dict[str, list[tuple[Any, int]]]) -> str:
    return json.dumps(
        {s: [(v.isoformat() if isinstance(v, datetime) else v, k) for v, k in pairs] for s, pairs in cuts.items()}
    )


def tags_table(con: BaseBackend, as_of: date | None = None, tags: Sequence[Tag] = BUILTIN_TAGS) -> ir.Table:
    """The tag table of ``as_of`` (default: the latest version) — every tag, the stage and the
    value scores as the full run computed them, then the imported tags' current values;
    LookupError if there is no such version."""
    version = _version(con, as_of)
    day = version["as_of"]
    th = Thresholds(**json.loads(version["thresholds"]))
    base = stored_rows(con, day)
    ctx = context(base, day, version["timezone"], th, con.name)
    return imported.attach(con, scores_from_cuts(present(base, tags, ctx), _decode_cuts(version["cuts"])))


def stages(con: BaseBackend, day: date, *keep: str) -> ir.Table:
    """(customer_id, the stored columns ``keep``, stage) on ``day``, read from the stored rows alone."""
    version = _version(con, day)
    base = stored_rows(con, day)
    end = ibis.literal(end_of_day(day, version["timezone"]), type="timestamp('UTC')")
    th = Thresholds(**json.loads(version["thresholds"]))
    return base.select("customer_id", *keep, stage=stage_expr(base, end, th, con.name))


def daily_days(con: BaseBackend) -> list[date]:
    """Days whose stage counts are in ``lifecycle_daily``, oldest first."""
    if DAILY not in con.list_tables():
        return []
    return sorted(con.table(DAILY).select("as_of").distinct().as_of.to_pyarrow().to_pylist())


def record_daily(con: BaseBackend, days: Sequence[date]) -> None:
    """Count each stored version of ``days`` by branch (the customer's on that day) and stage
    into ``lifecycle_daily``, replacing what it held for those days."""
    if DAILY not in con.list_tables():
        con.create_table(DAILY, schema=DAILY_SCHEMA)
    if not days:
        return
    with transaction(con):
        listed = ", ".join(f"DATE '{d}'" for d in days)
        con.raw_sql(f"DELETE FROM {DAILY} WHERE as_of IN ({listed})")  # type: ignore[attr-defined]
        for day in days:
            t = stages(con, day, "branch_id")
            counts = t.group_by(["branch_id", "stage"]).aggregate(customers=t.count())
            insert(
                con,
                DAILY,
                counts.select(as_of=ibis.literal(day), branch_id="branch_id", stage="stage", customers="customers"),
            )


_IN_TRANSACTION: weakref.WeakSet[BaseBackend] = weakref.WeakSet()


@contextmanager
def transaction(con: BaseBackend) -> Iterator[None]:
    """Everything written inside happens, or none of it (one DuckDB transaction; a process killed
    inside leaves none of it). Inside another, it is part of the outer one."""
    if con in _IN_TRANSACTION:
        yield
        return
    con.raw_sql("BEGIN TRANSACTION")  # type: ignore[attr-defined]
    _IN_TRANSACTION.add(con)
    try:
        yield
    except BaseException:
        con.raw_sql("ROLLBACK")  # type: ignore[attr-defined]
        raise
    else:
        con.raw_sql("COMMIT")  # type: ignore[attr-defined]
    finally:
        _IN_TRANSACTION.discard(con)


def _sql(con: BaseBackend, *statements: str) -> None:
    """Run ``statements`` in one transaction: all of them happen, or none."""
    with transaction(con):
        con.raw_sql("; ".join(statements))  # type: ignore[attr-defined]


def _column_types(con: BaseBackend, scratch: str) -> dict[str, str]:
    """Each column of the table ``scratch`` with its type as DuckDB spells it."""
    raw = con.con  # type: ignore[attr-defined]
    return dict(raw.execute(f"SELECT column_name, column_type FROM (DESCRIBE {scratch})").fetchall())


def _value_names(con: BaseBackend, table: str) -> str:
    """The stored-value columns of ``table`` (all but the customer and the validity days), quoted
    and comma-separated for SQL."""
    keys = ("customer_id", "valid_from", "valid_to")
    return ", ".join(f'"{c}"' for c in con.table(table).columns if c not in keys)


def _ensure_tables(con: BaseBackend, scratch: str) -> None:
    """Create the current and replaced rows' tables to hold the columns of the table ``scratch``,
    or add those they lack."""
    columns = con.table(scratch)
    tables = con.list_tables()
    if HISTORY not in tables:
        values = {c: t for c, t in columns.schema().items() if c != "customer_id"}
        con.create_table(
            HISTORY, schema=ibis.schema({"customer_id": "int64", "valid_from": "date", "valid_to": "date"} | values)
        )
        con.create_table(CURRENT, schema=ibis.schema({"customer_id": "int64", "valid_from": "date"} | values))
    else:
        upgrade(con)
        # a tag added since the history began (a full run follows a change of definitions):
        # a new column, NULL in the older versions; a removed tag's column stays, unread
        have = set(con.table(HISTORY).columns)
        missing = [c for c in columns.columns if c not in have]
        if missing:
            types = _column_types(con, scratch)
            for name in missing:
                for table in (HISTORY, CURRENT):
                    con.raw_sql(f'ALTER TABLE {table} ADD COLUMN "{name}" {types[name]}')  # type: ignore[attr-defined]
    if VERSIONS not in tables:
        con.create_table(VERSIONS, schema=VERSIONS_SCHEMA)


def upgrade(con: BaseBackend) -> bool:
    """Split a ``tag_history`` written before ``tag_current`` existed (its current rows had no
    ``valid_to``): the current rows move to ``tag_current`` and the rest is rewritten in
    ``valid_to`` order. Once, in one transaction; returns whether there was anything to do."""
    tables = con.list_tables()
    if HISTORY not in tables or CURRENT in tables:
        return False
    names = _value_names(con, HISTORY)
    _sql(
        con,
        f"CREATE TABLE {CURRENT} AS SELECT customer_id, valid_from, {names} FROM {HISTORY} WHERE valid_to IS NULL",
        f"CREATE TABLE {HISTORY}__sorted AS SELECT * FROM {HISTORY} WHERE valid_to IS NOT NULL ORDER BY valid_to",
        f"DROP TABLE {HISTORY}",
        f"ALTER TABLE {HISTORY}__sorted RENAME TO {HISTORY}",
    )
    return True


def rewind(con: BaseBackend, day: date) -> list[date]:
    """Forget every version from ``day`` on (a run of ``day`` replaces its own and invalidates the
    later ones); returns the days forgotten."""
    gone = [d for d in versions(con) if d >= day]
    if not gone:
        return []
    upgrade(con)
    names = _value_names(con, CURRENT)
    _sql(
        con,
        # rows of the forgotten versions, then the rows those replaced become current again
        f"DELETE FROM {HISTORY} WHERE valid_from >= DATE '{day}'",
        f"DELETE FROM {CURRENT} WHERE valid_from >= DATE '{day}'",
        f"INSERT INTO {CURRENT} (customer_id, valid_from, {names}) "
        f"SELECT customer_id, valid_from, {names} FROM {HISTORY} WHERE valid_to >= DATE '{day}'",
        f"DELETE FROM {HISTORY} WHERE valid_to >= DATE '{day}'",
        f"DELETE FROM {VERSIONS} WHERE as_of >= DATE '{day}'",
        f"DELETE FROM {TRANSITIONS} WHERE as_of >= DATE '{day}'" if TRANSITIONS in con.list_tables() else "SELECT 1",
        f"DELETE FROM {DAILY} WHERE as_of >= DATE '{day}'" if DAILY in con.list_tables() else "SELECT 1",
    )
    return gone


def stage_rows(
    con: BaseBackend, rows: ir.Table, scratch: str, *, complete: bool, tags: Sequence[Tag] = BUILTIN_TAGS
) -> None:
    """Compute ``rows`` — the stored rows (customer_id and the base columns) of every customer
    (``complete``) or of those whose values may have changed since the latest version — into the
    table ``scratch``, for :func:`write_version`."""
    # a day's changed rows go through a temporary table (in memory, not logged: they are written
    # once, into the history); a complete version's 2M rows through a table that can spill
    temp = not complete and con.name == "duckdb"
    materialise(con, scratch, rows.select("customer_id", *base_columns(tags)), temp=temp)


def write_version(
    con: BaseBackend,
    day: date,
    scratch: str,
    *,
    complete: bool,
    timezone: str,
    thresholds: Thresholds,
    tags: Sequence[Tag] = BUILTIN_TAGS,
) -> tuple[int, int]:
    """Store the version of ``day`` (after the latest one; see :func:`rewind`) from the rows
    :func:`stage_rows` computed into ``scratch``: in one transaction, the customers' current rows
    move to the history, closed on ``day``, theirs take their place and the version is recorded.
    Returns (customers in the version, rows written)."""
    columns = base_columns(tags)
    names = ", ".join(f'"{c}"' for c in columns)
    which = "" if complete else f" WHERE customer_id IN (SELECT customer_id FROM {scratch})"
    with transaction(con):
        _ensure_tables(con, scratch)
        _sql(
            con,
            f"INSERT INTO {HISTORY} (customer_id, valid_from, valid_to, {names}) "
            f"SELECT customer_id, valid_from, DATE '{day}', {names} FROM {CURRENT}{which}",
            f"DELETE FROM {CURRENT}{which}",
            f"INSERT INTO {CURRENT} (customer_id, valid_from, {names}) "
            f"SELECT customer_id, DATE '{day}', {names} FROM {scratch}",
        )
        written = int(con.table(scratch).count().to_pyarrow().as_py())
        base = stored_rows(con, day)
        cuts = cut_points(base)  # the scored tags are stored ones
        customers = int(base.count().to_pyarrow().as_py())
        row = {
            "as_of": day,
            "customers": customers,
            "changed": written,
            "timezone": timezone,
            "thresholds": json.dumps(asdict(thresholds)),
            "cuts": _encode_cuts(cuts),
            "written_at": datetime.now(UTC),
        }
        insert(con, VERSIONS, ibis.memtable([row], schema=VERSIONS_SCHEMA))
    return customers, written


def _ensure_transitions(con: BaseBackend) -> None:
    """Create the transition log, or add ``since`` to a log from before it was recorded (every
    change then was logged against the day before)."""
    if TRANSITIONS not in con.list_tables():
        con.create_table(TRANSITIONS, schema=TRANSITIONS_SCHEMA)
    elif "since" not in con.table(TRANSITIONS).columns:
        _sql(
            con,
            f"ALTER TABLE {TRANSITIONS} ADD COLUMN since DATE",
            f"UPDATE {TRANSITIONS} SET since = CAST(as_of - INTERVAL 1 DAY AS DATE)",
        )


def record_transitions(con: BaseBackend, as_of: date) -> tuple[int, date] | None:
    """Append the stage changes from the latest version before ``as_of`` (the day before, when
    every day was run) to ``as_of``; returns how many and that version's day, or None when there
    is no earlier version (nothing is appended)."""
    _ensure_transitions(con)
    earlier = [d for d in versions(con) if d < as_of]
    if not earlier:
        return None
    since = earlier[-1]
    before = stages(con, since).select(_cid="customer_id", from_stage="stage")
    after = stages(con, as_of).select("customer_id", to_stage="stage")
    joined = after.left_join(before, after.customer_id == before._cid)
    changes = joined.filter(joined.from_stage.isnull() | (joined.from_stage != joined.to_stage)).select(
        "customer_id",
        from_stage=joined.from_stage.fill_null("new"),
        to_stage=joined.to_stage,
        as_of=ibis.literal(as_of),
        since=ibis.literal(since),
    )
    insert(con, TRANSITIONS, changes)
    log = con.table(TRANSITIONS)
    return int(log.filter(log.as_of == as_of).count().to_pyarrow().as_py()), since


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
    stale_from: date | None = None,
    written: int | None = None,
) -> None:
    if RUNS not in con.list_tables():
        con.create_table(RUNS, schema=RUNS_SCHEMA)
    else:  # a log from before late data was traced, or before the rows written were logged
        present = set(con.table(RUNS).columns)
        for name, sql_type in LATER_RUN_COLUMNS.items():
            if name not in present:
                _sql(con, f"ALTER TABLE {RUNS} ADD COLUMN {name} {sql_type}")
    row = {"as_of": as_of, "mode": mode, "reason": reason, "fingerprint": fingerprint, "seconds": seconds}
    row |= counts
    row["ran_at"] = datetime.now(UTC)
    row["stale_from"] = stale_from
    row["written"] = written
    insert(con, RUNS, ibis.memtable([row], schema=RUNS_SCHEMA))


def logged_run(con: BaseBackend, as_of: date) -> dict[str, Any] | None:
    """The latest logged run of ``as_of``."""
    if RUNS not in con.list_tables():
        return None
    runs = con.table(RUNS)
    rows = runs.filter(runs.as_of == as_of).order_by(ibis.desc("ran_at")).limit(1).to_pyarrow().to_pylist()
    return rows[0] if rows else None


def prune(con: BaseBackend, keep_days: int) -> list[date]:
    """Forget tag versions more than ``keep_days`` older than the newest, and the history rows
    no kept version can see; returns the forgotten days. Their stage changes and stage counts
    stay."""
    found = versions(con)
    if not found:
        return []
    cutoff = found[-1] - timedelta(days=keep_days - 1)
    dropped = [d for d in found if d < cutoff]
    if dropped:
        _sql(
            con,
            f"DELETE FROM {HISTORY} WHERE valid_to <= DATE '{cutoff}'",
            f"DELETE FROM {VERSIONS} WHERE as_of < DATE '{cutoff}'",
        )
    return dropped
