"""Audience members in the warehouse: uploaded lists (per audience version) and snapshots.

Both are narrow tables of customer ids keyed by the operational row they belong to, so a
snapshot's members can be joined with tags, outcomes and other snapshots where the data lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ibis
import pyarrow as pa

from bankgrowth.warehouse.engine import append_arrow

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

LISTS = "audience_list_members"
LISTS_SCHEMA = ibis.schema({"audience_id": "int64", "version": "int64", "customer_id": "int64"})
SNAPSHOTS = "audience_snapshot_members"
SNAPSHOTS_SCHEMA = ibis.schema({"snapshot_id": "int64", "customer_id": "int64"})


def ensure(con: BaseBackend) -> None:
    existing = set(con.list_tables())
    for name, schema in ((LISTS, LISTS_SCHEMA), (SNAPSHOTS, SNAPSHOTS_SCHEMA)):
        if name not in existing:
            con.create_table(name, schema=schema)


def write_list(con: BaseBackend, audience_id: int, version: int, customer_ids: list[int]) -> None:
    ensure(con)
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
    con.insert(
        SNAPSHOTS, members.select(snapshot_id=ibis.literal(snapshot_id, type="int64"), customer_id="customer_id")
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
