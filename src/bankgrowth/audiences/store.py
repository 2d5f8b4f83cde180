"""Audience data in the warehouse: uploaded lists (per audience version), snapshots, and the
materialized profile table that counts read.

Both are narrow tables of customer ids keyed by the operational row they belong to, so a
snapshot's members can be joined with tags, outcomes and other snapshots where the data lives.
Those ids are the operational store's, so the warehouse records which store writes them
(:func:`pair`) and refuses a second one; rows already under an id being written are the remains
of a write whose operational row never committed (the process was killed), and are replaced.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import ibis
import pyarrow as pa

from bankgrowth.errors import Conflict
from bankgrowth.insight import imported
from bankgrowth.insight import store as tag_store
from bankgrowth.operational.base import utcnow
from bankgrowth.warehouse.engine import append_arrow, create_if_missing, insert, materialise

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

LISTS = "audience_list_members"
LISTS_SCHEMA = ibis.schema({"audience_id": "int64", "version": "int64", "customer_id": "int64"})
SNAPSHOTS = "audience_snapshot_members"
SNAPSHOTS_SCHEMA = ibis.schema({"snapshot_id": "int64", "customer_id": "int64"})


def ensure(con: BaseBackend) -> None:
    for name, schema in ((LISTS, LISTS_SCHEMA), (SNAPSHOTS, SNAPSHOTS_SCHEMA)):
        create_if_missing(con, name, schema)


PAIRING = "operational_store"
PAIRING_SCHEMA = ibis.schema({"store_key": "string", "paired_at": "timestamp('UTC')"})
KEYED_BY_THE_STORE = (LISTS, SNAPSHOTS, "campaign_assignments")


def pair(con: BaseBackend, store_key: str) -> None:
    """Record ``store_key`` as the operational store whose ids key this warehouse's lists,
    snapshots and campaign assignments, on the first write; refuse any other store's."""
    create_if_missing(con, PAIRING, PAIRING_SCHEMA)
    paired = con.table(PAIRING).select("store_key").to_pyarrow().column(0).to_pylist()
    if not paired:
        row = {"store_key": [store_key], "paired_at": [utcnow()]}
        append_arrow(con, PAIRING, pa.table(row, schema=PAIRING_SCHEMA.to_pyarrow()))
        return
    if store_key not in paired:
        tables = ", ".join(KEYED_BY_THE_STORE)
        raise Conflict(
            f"this warehouse's audience and campaign data belong to another operational store (key"
            f" {paired[0][:8]}…, this store's {store_key[:8]}…): its snapshot and campaign ids would mix with"
            f" this store's. Point BANKGROWTH_OPERATIONAL_URL at that store, or, to start this warehouse's"
            f" audience and campaign data afresh, drop the tables {tables} and {PAIRING}",
            f"该数仓的客群与营销数据属于另一个运营库（密钥 {paired[0][:8]}…，本库 {store_key[:8]}…），"
            f"快照和活动编号会与本库混淆。请将 BANKGROWTH_OPERATIONAL_URL 指向那个运营库，"
            f"或删除表 {tables} 和 {PAIRING} 以重新开始",
            code="warehouse_of_another_store",
            details={"warehouse_store": paired[0][:8], "this_store": store_key[:8]},
        )


def write_list(con: BaseBackend, audience_id: int, version: int, customer_ids: list[int]) -> None:
    ensure(con)
    if list_members(con, audience_id, version).count().execute():  # an upload killed before its commit
        con.raw_sql(  # type: ignore[attr-defined]
            f"DELETE FROM {LISTS} WHERE audience_id = {int(audience_id)} AND version = {int(version)}"
        )
    n = len(customer_ids)
    append_arrow(
        con,
        LISTS,
        pa.table(
            {
                "audience_id": pa.array([audience_id] * n, pa.int64()),
                "version": pa.array([version] * n, pa.int64()),
                "customer_id": pa.array(customer_ids, pa.int64()),
            }
        ),
    )


def list_members(con: BaseBackend, audience_id: int, version: int) -> ir.Table:
    ensure(con)
    t = con.table(LISTS)
    return t.filter(t.audience_id == audience_id, t.version == version).select("customer_id")


def write_snapshot(con: BaseBackend, snapshot_id: int, members: ir.Table) -> int:
    """Insert the members (one ``customer_id`` column) under ``snapshot_id`` in one statement, so a
    snapshot is written whole or not at all; returns how many."""
    ensure(con)
    if snapshot_members(con, snapshot_id).count().execute():  # a snapshot killed before its commit
        drop_snapshot(con, snapshot_id)
    insert(
        con, SNAPSHOTS, members.select(snapshot_id=ibis.literal(snapshot_id, type="int64"), customer_id="customer_id")
    )
    return int(snapshot_members(con, snapshot_id).count().execute())


def snapshot_members(con: BaseBackend, snapshot_id: int) -> ir.Table:
    ensure(con)
    t = con.table(SNAPSHOTS)
    return t.filter(t.snapshot_id == snapshot_id).select("customer_id")


def drop_snapshot(con: BaseBackend, snapshot_id: int) -> None:
    """Remove a snapshot's members whose operational row was never committed."""
    if SNAPSHOTS in con.list_tables():
        con.raw_sql(f"DELETE FROM {SNAPSHOTS} WHERE snapshot_id = {int(snapshot_id)}")  # type: ignore[attr-defined]


# --- the profile table counts read ----------------------------------------------------------------

PROFILE = "audience_profile"
PROFILE_KEY = "audience_profile_key"


_STATE_SQL = f"""
SELECT
  (SELECT max(as_of) FROM {tag_store.VERSIONS}) AS latest,
  (SELECT CAST(max(written_at) AS VARCHAR) FROM {tag_store.VERSIONS} WHERE as_of = ?) AS written,
  (SELECT coalesce(string_agg(name || ':' || load_id, ',' ORDER BY name), '') FROM {imported.DEFINITIONS}) AS loads
"""


def _sources_key(con: BaseBackend, day: date) -> str:
    """What the profile of ``day`` is built from: the tag version (day, when it was written) and the
    imported tags' loads. Any change rebuilds it."""
    create_if_missing(con, imported.DEFINITIONS, imported.DEFINITIONS_SCHEMA)
    if con.name == "duckdb":
        _, written, loads = con.con.execute(_STATE_SQL, [day]).fetchone()  # type: ignore[attr-defined]
    else:
        v = con.table(tag_store.VERSIONS)
        written = v.filter(v.as_of == day).written_at.max().cast("string").execute()
        d = con.table(imported.DEFINITIONS).to_pyarrow().to_pylist()
        loads = ",".join(sorted(f"{r['name']}:{r['load_id']}" for r in d))
    return json.dumps([day.isoformat(), str(written), loads])


_FAST_STATE_SQL = (
    _STATE_SQL.replace("as_of = ?", f"as_of = (SELECT max(as_of) FROM {tag_store.VERSIONS})").rstrip()
    + f",\n  (SELECT max(key) FROM {PROFILE_KEY}) AS stored\n"
)


@dataclass(frozen=True)
class State:
    latest: date | None
    profile_fresh: bool


def _state_of(latest: date | None, written: str | None, loads: str, stored: str | None) -> State:
    if latest is None:
        return State(None, False)
    return State(latest, stored == json.dumps([latest.isoformat(), str(written), loads]))


def count_with_state(con: BaseBackend, count_sql: str) -> tuple[int, State] | None:
    """Run a compiled count and the freshness check in one round trip (DuckDB); ``None`` if the
    bookkeeping tables are not there yet."""
    try:
        row = con.con.execute(  # type: ignore[attr-defined]
            _FAST_STATE_SQL.replace("SELECT\n", f"SELECT\n  ({count_sql}) AS n,\n", 1)
        ).fetchone()
    except Exception:
        return None
    n, latest, written, loads, stored = row
    return int(n), _state_of(latest, written, loads, stored)


def state(con: BaseBackend) -> State | None:
    """The latest tag day and whether the profile table is built from it — in one query on DuckDB
    (the check every count makes); ``None`` where that query cannot answer (then ask slowly)."""
    if con.name != "duckdb":
        return None
    raw = con.con  # type: ignore[attr-defined]
    try:
        latest, written, loads, stored = raw.execute(_FAST_STATE_SQL).fetchone()
    except Exception:  # a table not created yet: the slow path creates what is missing
        return None
    return _state_of(latest, written, loads, stored)


def profile(con: BaseBackend, day: date) -> ir.Table:
    """The tag table of ``day`` materialized once (every tag, stage and score as stored columns),
    so that a count is one scan of one table instead of recomputing stages and scores. Built on
    first use after a nightly run (seconds at 2M customers), rebuilt when its sources change."""
    key = _sources_key(con, day)
    if _built_from(con) == key:
        return con.table(PROFILE)
    with _BUILDING:  # the first counts after a nightly run arrive together: one of them builds it
        if _built_from(con) != key:
            _build(con, day, key)
    return con.table(PROFILE)


# One build at a time in a process: the API answers counts on threads, each with its own
# connection, and two builds at once conflicted in DuckDB's catalog (a 500 for all but one).
_BUILDING = threading.Lock()


def _built_from(con: BaseBackend) -> str | None:
    tables = set(con.list_tables())
    if PROFILE not in tables or PROFILE_KEY not in tables:
        return None
    stored = con.table(PROFILE_KEY).key.to_pyarrow().to_pylist()
    return stored[0] if len(stored) == 1 else None


def _build(con: BaseBackend, day: date, key: str) -> None:
    """Write the profile of ``day`` and its key. On DuckDB the new table is written beside the old
    one and takes its place in one transaction, so a count reading the old one meanwhile never
    finds the table missing or paired with another key."""
    if con.name != "duckdb":
        con.create_table(PROFILE, tag_store.tags_table(con, day), overwrite=True)
        con.create_table(PROFILE_KEY, pa.table({"key": [key]}), overwrite=True)
        return
    staging = f"{PROFILE}__next"
    materialise(con, staging, tag_store.tags_table(con, day))
    quoted = key.replace("'", "''")
    con.raw_sql(  # type: ignore[attr-defined]
        f"BEGIN TRANSACTION; DROP TABLE IF EXISTS {PROFILE}; ALTER TABLE {staging} RENAME TO {PROFILE}; "
        f"CREATE OR REPLACE TABLE {PROFILE_KEY} (key VARCHAR); INSERT INTO {PROFILE_KEY} VALUES ('{quoted}'); COMMIT"
    )
